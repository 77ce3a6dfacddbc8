// All-reduce. Small buffers: every rank sends its whole buffer to every peer and reduces
// all contributions in rank order (one round, lowest latency). Large buffers: a
// reduce-scatter (rank r reduces slice r) then an all-gather of the reduced slices, so
// each rank moves 2(n-1)/n of the buffer, pipelined through the pair streams.
#include <cstring>

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

}  // namespace

void all_reduce(CollectiveContext& c, Span buffer) {
  if (c.world() == 1) return;
  if (c.bytes(buffer) <= kAllReduceDirectMaxBytes || buffer.numel < static_cast<size_t>(c.world()))
    return all_reduce_direct(c, buffer);
  std::vector<Span> slices = split(buffer.data, buffer.numel, c.esize(), c.world());
  reduce_scatter(c, slices, slices[c.rank()]);
  CollectiveContext gather_ctx{c.comm, c.at_step(2), c.dtype, c.deadline};
  all_gather(gather_ctx, slices[c.rank()], slices);
}

}  // namespace torch_npu_sim::dist
