// The rounds each algorithm of algorithms/ runs, for the simulated clock: all are "direct"
// (each round every rank messages every peer), so a round costs one latency plus the bytes a
// rank sends over its links.
#include "distributed/SimCost.h"

#include "distributed/algorithms/Algorithms.h"
#include "npusim_runtime.h"
#include "simulation/CollectiveCost.h"

namespace torch_npu_sim::dist {

namespace {

struct CollectiveCost {
  const char* name = nullptr;  // null: nothing to charge
  double bytes = 0;            // bytes a rank sends, all rounds
  uint64_t ns = 0;
};

CollectiveCost cost_of(OpKind kind, const at::Tensor& like, uint64_t numel, int world) {
  if (!like.defined() || like.device().type() != c10::DeviceType::PrivateUse1) return {};
  const double esize = static_cast<double>(like.element_size());
  const double peers = world - 1;
  double bytes = static_cast<double>(numel) * esize;  // what the op names its size (per rank)
  double sent = 0;                                    // bytes a rank sends per round
  int rounds = 1;
  switch (kind) {
    case OpKind::AllReduce:
      if (bytes <= kAllReduceDirectMaxBytes || numel < static_cast<uint64_t>(world)) {
        sent = peers * bytes;  // the whole buffer to every peer
      } else {
        sent = peers * bytes / world;  // reduce-scatter, then all-gather of the slices
        rounds = 2;
      }
      break;
    case OpKind::Broadcast:
    case OpKind::Reduce:
    case OpKind::AllGather:
    case OpKind::Gather:
    case OpKind::Scatter:
    case OpKind::ReduceScatter:
      sent = peers * bytes;  // one per-rank chunk to (or from) every peer
      break;
    case OpKind::AllToAll:
      bytes = static_cast<double>(like.numel()) * esize;  // the whole input, split among the ranks
      sent = peers * bytes / world;
      break;
    default: return {};  // barriers and point-to-point carry no data worth charging
  }
  return {op_name(kind), sent * rounds, simulation::direct_rounds_ns(world, sent, rounds)};
}

}  // namespace

void charge_collective_cost(OpKind kind, const at::Tensor& like, uint64_t numel, int world) {
  if (!npusimCostModelEnabled()) return;
  CollectiveCost c = cost_of(kind, like, numel, world);
  if (c.name) simulation::charge_collective(like.device().index(), c.name, c.bytes, c.ns);
}

uint64_t collective_cost_ns(OpKind kind, const at::Tensor& like, uint64_t numel, int world) {
  return cost_of(kind, like, numel, world).ns;
}

}  // namespace torch_npu_sim::dist
