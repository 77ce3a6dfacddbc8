#include "simulation/CollectiveCost.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>

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

uint64_t direct_rounds_ns(int world, double bytes_per_round, int rounds) {
  if (world <= 1 || rounds <= 0) return 0;
  LinkSpec l = links();
  const int peers = world - 1;
  double seconds_per_round = 0, hops = 1;
  switch (l.topology) {
    case Topology::kSwitch: seconds_per_round = bytes_per_round / l.bandwidth; break;
    case Topology::kMesh: seconds_per_round = bytes_per_round / (l.bandwidth * peers); break;
    case Topology::kRing: {
      double total_hops = 0;
      for (int d = 1; d < world; ++d) total_hops += std::min(d, world - d);
      // every byte crosses total_hops / peers links on average; two links leave each chip
      seconds_per_round = bytes_per_round * (total_hops / peers) / (2 * l.bandwidth);
      hops = world / 2;
      break;
    }
  }
  double ns = rounds * (hops * l.latency_ns + seconds_per_round * 1e9);
  return static_cast<uint64_t>(std::llround(ns));
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
          set_links(LinkSpec{bandwidth, latency_ns, static_cast<Topology>(topology)});
        });
  m.def("direct_rounds_ns(int world, float bytes_per_round, int rounds) -> int",
        [](int64_t world, double bytes, int64_t rounds) {
          return static_cast<int64_t>(direct_rounds_ns(static_cast<int>(world), bytes, static_cast<int>(rounds)));
        });
}

}  // namespace torch_npu_sim::simulation
