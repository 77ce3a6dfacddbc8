// Gather (every rank to the root) and scatter (the root to every rank).
#include <cstring>

#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {

void gather(CollectiveContext& c, Span input, const std::vector<Span>& outputs, int root) {
  std::vector<Transfer> ts;
  if (c.rank() != root) {
    ts.push_back(c.comm.send_to(root, c.op, input.data, c.bytes(input)));
  } else {
    std::memcpy(outputs[root].data, input.data, c.bytes(input));
    for (int p = 0; p < c.world(); ++p)
      if (p != root) ts.push_back(c.comm.recv_from(p, c.op, outputs[p].data, c.bytes(outputs[p])));
  }
  exchange_descriptors(c, ts);
  c.comm.run(ts, c.op, c.deadline);
}

void scatter(CollectiveContext& c, const std::vector<Span>& inputs, Span output, int root) {
  std::vector<Transfer> ts;
  if (c.rank() != root) {
    ts.push_back(c.comm.recv_from(root, c.op, output.data, c.bytes(output)));
  } else {
    std::memcpy(output.data, inputs[root].data, c.bytes(output));
    for (int p = 0; p < c.world(); ++p)
      if (p != root) ts.push_back(c.comm.send_to(p, c.op, inputs[p].data, c.bytes(inputs[p])));
  }
  exchange_descriptors(c, ts);
  c.comm.run(ts, c.op, c.deadline);
}

}  // namespace torch_npu_sim::dist
