// All-reduce, by size and placement:
// - small buffers: every rank sends its whole buffer to every peer and reduces all
//   contributions in rank order (one round, lowest latency);
// - large buffers every rank of one host can map (PeerMemory.h): rank r reduces slice r
//   of all ranks' buffers into its own in place, then copies the other reduced slices
//   from their owners; four rounds of small messages order it and nothing waits on a ring;
// - other large buffers: a reduce-scatter (rank r reduces slice r) then an all-gather of
//   the reduced slices through the pair streams, each rank moving 2(n-1)/n of the buffer.
#include <cstring>

#include "distributed/PeerMemory.h"
#include "distributed/Reduction.h"
#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {
namespace {

constexpr uint8_t kAvg = 1;

void all_reduce_direct(CollectiveContext& c, Span buffer) {
  const size_t bytes = c.bytes(buffer);
  const int n = c.world(), me = c.rank();
  std::vector<uint8_t>& scratch = c.comm.scratch(bytes * n);
  std::memcpy(scratch.data() + bytes * me, buffer.data, bytes);
  std::vector<Transfer> ts;
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    ts.push_back(c.comm.send_to(p, c.op, buffer.data, bytes));
    ts.push_back(c.comm.recv_from(p, c.op, scratch.data() + bytes * p, bytes));
  }
  c.comm.run(ts, c.op, c.deadline);
  std::memcpy(buffer.data, scratch.data(), bytes);
  for (int p = 1; p < n; ++p) combine(buffer.data, scratch.data() + bytes * p, buffer.numel, c.dtype, c.op.reduce_op);
  if (c.op.reduce_op == kAvg) finalize_average(buffer.data, buffer.numel, c.dtype, n);
}

bool all_reduce_in_place(CollectiveContext& c, Span buffer) {
  auto peers = PeerBuffers::open(c, buffer.data, c.bytes(buffer), kPeerHandlesStep);
  if (!peers) return false;
  const int n = c.world(), me = c.rank();
  std::vector<Span> slices = split(buffer.data, buffer.numel, c.esize(), n);
  auto offset = [&](int slice) { return static_cast<uint8_t*>(slices[slice].data) - static_cast<uint8_t*>(buffer.data); };
  // Until the next round only this rank touches slice `me` of any buffer, so it may be
  // written in place while the owners of the other slices read them.
  std::vector<const void*> sources = reduction_order(*peers, n, me, offset(me));
  reduce_sources(slices[me].data, sources.data(), n, slices[me].numel, c.dtype, c.op.reduce_op);
  if (c.op.reduce_op == kAvg) finalize_average(slices[me].data, slices[me].numel, c.dtype, n);
  sync_round(c, kPeerReducedStep);
  for (int p = 0; p < n; ++p)
    if (p != me) std::memcpy(slices[p].data, peers->of(p) + offset(p), c.bytes(slices[p]));
  end_peer_reads(c);  // every peer has read this rank's buffer, which may change after
  return true;
}

}  // namespace

void all_reduce(CollectiveContext& c, Span buffer) {
  if (c.world() == 1) return;
  if (c.bytes(buffer) <= kAllReduceDirectMaxBytes || buffer.numel < static_cast<size_t>(c.world()))
    return all_reduce_direct(c, buffer);
  if (all_reduce_in_place(c, buffer)) return;
  std::vector<Span> slices = split(buffer.data, buffer.numel, c.esize(), c.world());
  reduce_scatter_streamed(c, slices, slices[c.rank()]);
  CollectiveContext gather_ctx{c.comm, c.at_step(2), c.dtype, c.deadline};
  all_gather_streamed(gather_ctx, slices[c.rank()], slices);
}

}  // namespace torch_npu_sim::dist
