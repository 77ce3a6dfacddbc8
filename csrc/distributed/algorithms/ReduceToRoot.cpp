// Reduce: every rank sends its buffer to the root, which combines them in rank order.
#include "distributed/Reduction.h"
#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {

void reduce(CollectiveContext& c, Span buffer, int root) {
  std::vector<Transfer> ts;
  if (c.rank() != root) {
    ts.push_back(c.comm.send_to(root, c.op, buffer.data, c.bytes(buffer)));
  } else {
    for (int p = 0; p < c.world(); ++p)
      if (p != root) ts.push_back(c.comm.combine_from(p, c.op, buffer.data, c.bytes(buffer), c.dtype));
  }
  exchange_descriptors(c, ts);
  c.comm.run(ts, c.op, c.deadline);
  if (c.rank() == root && c.op.reduce_op == 1) finalize_average(buffer.data, buffer.numel, c.dtype, c.world());
}

}  // namespace torch_npu_sim::dist
