// All-gather: every rank sends its input to every peer.
#include <cstring>

#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {

void all_gather(CollectiveContext& c, Span input, const std::vector<Span>& outputs) {
  const int me = c.rank();
  if (outputs[me].data != input.data) std::memcpy(outputs[me].data, input.data, c.bytes(input));
  std::vector<Transfer> ts;
  for (int p = 0; p < c.world(); ++p) {
    if (p == me) continue;
    ts.push_back(c.comm.send_to(p, c.op, input.data, c.bytes(input)));
    ts.push_back(c.comm.recv_from(p, c.op, outputs[p].data, c.bytes(outputs[p])));
  }
  c.comm.run(ts, c.op, c.deadline);
}

}  // namespace torch_npu_sim::dist
