// Simulated time of collectives: an alpha-beta model of the rounds an algorithm runs over the
// chip's inter-chip links, charged to a stream.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>

namespace torch_npu_sim::simulation {

enum class Topology : int { kSwitch = 0, kRing = 1, kMesh = 2 };

struct LinkSpec {
  double bandwidth = 100e9;  // bytes/s per direction of one link
  double latency_ns = 5000;  // per message hop
  Topology topology = Topology::kSwitch;
  // Chips per node (0: every rank in one node). Ranks are numbered node by node; between
  // nodes each chip has its own network link (a NIC per chip, as in HGX/DGX systems).
  int ranks_per_node = 0;
  double node_bandwidth = 50e9;     // bytes/s per direction of a chip's network link
  double node_latency_ns = 10000;   // per message between nodes
};

void set_links(const LinkSpec& links);
LinkSpec links();

// Simulated ns of `rounds` rounds in which every rank sends `bytes_per_round` bytes, spread
// evenly over its world - 1 peers at once (the "direct" algorithms of csrc/distributed):
//   switch: one link per chip into a switch, each message one hop;
//   mesh:   a link to every peer, used in parallel;
//   ring:   two neighbour links; a message to a peer d steps away crosses min(d, world - d)
//           links, so it loads the ring that many times and waits that many latencies.
// With several nodes, the bytes for peers in other nodes go over the chip's network link at
// the same time as the rest go over the links inside the node: a round takes the longer of
// the two, and the network latency when it is the longer one.
uint64_t direct_rounds_ns(int world, double bytes_per_round, int rounds);

// Charges `ns` of collective `name` moving `bytes` to `device`'s current stream (when the
// cost model is on).
void charge_collective(c10::DeviceIndex device, const char* name, double bytes, uint64_t ns);

}  // namespace torch_npu_sim::simulation
