// Gather (every rank to the root) and scatter (the root to every rank); the side that
// only sends hears back what its peers called.
#include <cstring>

#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {

void gather(CollectiveContext& c, Span input, const std::vector<Span>& outputs, int root) {
  std::vector<Transfer> ts;
  if (c.rank() != root) {
    ts.push_back(c.comm.send_to(root, c.op, input.data, c.bytes(input)));
    ts.push_back(c.comm.ack_from(root, c.op));
  } else {
    std::memcpy(outputs[root].data, input.data, c.bytes(input));
    for (int p = 0; p < c.world(); ++p) {
      if (p == root) continue;
      ts.push_back(c.comm.recv_from(p, c.op, outputs[p].data, c.bytes(outputs[p])));
      ts.push_back(c.comm.ack_to(p, c.op));
    }
  }
  c.comm.run(ts, c.op, c.deadline);
}

void scatter(CollectiveContext& c, const std::vector<Span>& inputs, Span output, int root) {
  std::vector<Transfer> ts;
  if (c.rank() != root) {
    ts.push_back(c.comm.recv_from(root, c.op, output.data, c.bytes(output)));
    ts.push_back(c.comm.ack_to(root, c.op));
  } else {
    std::memcpy(output.data, inputs[root].data, c.bytes(output));
    for (int p = 0; p < c.world(); ++p) {
      if (p == root) continue;
      ts.push_back(c.comm.send_to(p, c.op, inputs[p].data, c.bytes(inputs[p])));
      ts.push_back(c.comm.ack_from(p, c.op));
    }
  }
  c.comm.run(ts, c.op, c.deadline);
}

}  // namespace torch_npu_sim::dist
