#include "simulation/CollectiveCost.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <utility>

#include <torch/library.h>

#include "core/Runtime.h"
#include "core/Stream.h"

namespace torch_npu_sim::simulation {
namespace {

std::mutex links_mutex;
LinkSpec current_links;

}  // namespace

void set_links(const LinkSpec& l) {
  std::lock_guard<std::mutex> lock(links_mutex);
  current_links = l;
}

LinkSpec links() {
  std::lock_guard<std::mutex> lock(links_mutex);
  return current_links;
}

namespace {

// seconds and latency hops of one round inside a node of `world` chips, each sending `bytes`
std::pair<double, double> round_in_node(const LinkSpec& l, int world, double bytes) {
  const int peers = world - 1;
  if (peers <= 0) return {0, 0};
  switch (l.topology) {
    case Topology::kSwitch: return {bytes / l.bandwidth, 1};
    case Topology::kMesh: return {bytes / (l.bandwidth * peers), 1};
    case Topology::kRing: {
      double total_hops = 0;
      for (int d = 1; d < world; ++d) total_hops += std::min(d, world - d);
      // every byte crosses total_hops / peers links on average; two links leave each chip
      return {bytes * (total_hops / peers) / (2 * l.bandwidth), static_cast<double>(world / 2)};
    }
  }
  return {0, 0};
}

}  // namespace

uint64_t direct_rounds_ns(int world, double bytes_per_round, int rounds) {
  if (world <= 1 || rounds <= 0) return 0;
  LinkSpec l = links();
  const int peers = world - 1;
  const int in_node = l.ranks_per_node > 0 ? std::min(world, l.ranks_per_node) : world;
  const int other_nodes_peers = world - in_node;
  auto [inside_s, hops] = round_in_node(l, in_node, bytes_per_round * (in_node - 1) / peers);
  double round_ns = hops * l.latency_ns + inside_s * 1e9;
  if (other_nodes_peers > 0) {
    double network_s = bytes_per_round * other_nodes_peers / peers / l.node_bandwidth;
    round_ns = std::max(round_ns, l.node_latency_ns + network_s * 1e9);
  }
  return static_cast<uint64_t>(std::llround(rounds * round_ns));
}

void charge_collective(c10::DeviceIndex device, const char* name, double bytes, uint64_t ns) {
  if (!npusimCostModelEnabled()) return;
  NPUSIM_CHECK(npusimStreamChargeActivity(runtime_stream(current_stream(device)), npusimActivityCollective, name,
                                          bytes, ns));
}

TORCH_LIBRARY_FRAGMENT(npusim_sim, m) {
  m.def("set_links(float bandwidth, float latency_ns, int topology) -> ()",
        [](double bandwidth, double latency_ns, int64_t topology) {
          TORCH_CHECK(std::isfinite(bandwidth) && bandwidth > 0, "link bandwidth must be > 0, got ", bandwidth);
          TORCH_CHECK(std::isfinite(latency_ns) && latency_ns >= 0, "link latency must be >= 0, got ", latency_ns);
          TORCH_CHECK(topology >= 0 && topology <= 2, "topology must be 0 (switch), 1 (ring) or 2 (mesh), got ",
                      topology);
          LinkSpec l = links();
          l.bandwidth = bandwidth;
          l.latency_ns = latency_ns;
          l.topology = static_cast<Topology>(topology);
          set_links(l);
        });
  m.def("set_nodes(int ranks_per_node, float bandwidth, float latency_ns) -> ()",
        [](int64_t ranks_per_node, double bandwidth, double latency_ns) {
          TORCH_CHECK(ranks_per_node >= 0, "ranks_per_node must be >= 0 (0: one node), got ", ranks_per_node);
          TORCH_CHECK(std::isfinite(bandwidth) && bandwidth > 0, "network bandwidth must be > 0, got ", bandwidth);
          TORCH_CHECK(std::isfinite(latency_ns) && latency_ns >= 0, "network latency must be >= 0, got ", latency_ns);
          LinkSpec l = links();
          l.ranks_per_node = static_cast<int>(ranks_per_node);
          l.node_bandwidth = bandwidth;
          l.node_latency_ns = latency_ns;
          set_links(l);
        });
  m.def("direct_rounds_ns(int world, float bytes_per_round, int rounds) -> int",
        [](int64_t world, double bytes, int64_t rounds) {
          return static_cast<int64_t>(direct_rounds_ns(static_cast<int>(world), bytes, static_cast<int>(rounds)));
        });
}

}  // namespace torch_npu_sim::simulation
