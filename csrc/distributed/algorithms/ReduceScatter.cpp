// Reduce-scatter: every rank sends inputs[p] to rank p and combines what it receives
// into its output, peers in rank order.
#include <cstring>

#include "distributed/Reduction.h"
#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {

void reduce_scatter(CollectiveContext& c, const std::vector<Span>& inputs, Span output) {
  const int n = c.world(), me = c.rank();
  if (inputs[me].data != output.data) std::memcpy(output.data, inputs[me].data, c.bytes(output));
  OpDesc op = c.at_step(1);
  std::vector<Transfer> ts;
  for (int p = 0; p < n; ++p)
    if (p != me) ts.push_back(c.comm.send_to(p, op, inputs[p].data, c.bytes(inputs[p])));
  for (int p = 0; p < n; ++p)
    if (p != me) ts.push_back(c.comm.combine_from(p, op, output.data, c.bytes(output), c.dtype));
  c.comm.run(ts, op, c.deadline);
  if (c.op.reduce_op == 1) finalize_average(output.data, output.numel, c.dtype, n);
}

}  // namespace torch_npu_sim::dist
