// Reduce-scatter: where the group can map each other's device memory (PeerMemory.h) and
// the inputs are one buffer, rank r reduces slice r of every rank's input straight into
// its output (its own first, then the peers in rank order, as streamed); else every rank
// sends inputs[p] to rank p and combines what it receives into its output.
#include <cstring>

#include "distributed/PeerMemory.h"
#include "distributed/Reduction.h"
#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {
namespace {

constexpr uint8_t kAvg = 1;

bool contiguous(CollectiveContext& c, const std::vector<Span>& inputs) {
  auto* next = static_cast<uint8_t*>(inputs[0].data);
  for (const Span& s : inputs) {
    if (s.data != next) return false;
    next += c.bytes(s);
  }
  return true;
}

bool reduce_scatter_in_place(CollectiveContext& c, const std::vector<Span>& inputs, Span output) {
  size_t total = 0;
  for (const Span& s : inputs) total += c.bytes(s);
  // separate input tensors share nothing: an empty buffer tells every rank to stream
  const bool one_buffer = contiguous(c, inputs);
  auto peers = PeerBuffers::open(c, one_buffer ? inputs[0].data : nullptr, total, kPeerHandlesStep);
  if (!peers) return false;
  const int n = c.world(), me = c.rank();
  const size_t offset = static_cast<uint8_t*>(inputs[me].data) - static_cast<uint8_t*>(inputs[0].data);
  std::vector<const void*> sources = reduction_order(*peers, n, me, offset);
  reduce_sources(output.data, sources.data(), n, output.numel, c.dtype, c.op.reduce_op);
  if (c.op.reduce_op == kAvg) finalize_average(output.data, output.numel, c.dtype, n);
  end_peer_reads(c);  // every peer has read this rank's buffer, which may change after
  return true;
}

}  // namespace

void reduce_scatter_streamed(CollectiveContext& c, const std::vector<Span>& inputs, Span output) {
  const int n = c.world(), me = c.rank();
  if (inputs[me].data != output.data) std::memcpy(output.data, inputs[me].data, c.bytes(output));
  OpDesc op = c.at_step(1);
  std::vector<Transfer> ts;
  for (int p = 0; p < n; ++p)
    if (p != me) ts.push_back(c.comm.send_to(p, op, inputs[p].data, c.bytes(inputs[p])));
  for (int p = 0; p < n; ++p)
    if (p != me) ts.push_back(c.comm.combine_from(p, op, output.data, c.bytes(output), c.dtype));
  c.comm.run(ts, op, c.deadline);
  if (c.op.reduce_op == kAvg) finalize_average(output.data, output.numel, c.dtype, n);
}

void reduce_scatter(CollectiveContext& c, const std::vector<Span>& inputs, Span output) {
  if (c.world() > 1 && reduce_scatter_in_place(c, inputs, output)) return;
  reduce_scatter_streamed(c, inputs, output);
}

}  // namespace torch_npu_sim::dist
