// Barrier: an empty message to and from every peer.
#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {

void barrier(CollectiveContext& c) {
  std::vector<Transfer> ts;
  for (int p = 0; p < c.world(); ++p) {
    if (p == c.rank()) continue;
    ts.push_back(c.comm.send_to(p, c.op, nullptr, 0));
    ts.push_back(c.comm.recv_from(p, c.op, nullptr, 0));
  }
  c.comm.run(ts, c.op, c.deadline);
}

}  // namespace torch_npu_sim::dist
