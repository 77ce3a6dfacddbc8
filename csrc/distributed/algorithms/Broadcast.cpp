// Broadcast: the root sends its buffer to every peer.
#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {

void broadcast(CollectiveContext& c, Span buffer, int root) {
  std::vector<Transfer> ts;
  if (c.rank() == root) {
    for (int p = 0; p < c.world(); ++p)
      if (p != root) ts.push_back(c.comm.send_to(p, c.op, buffer.data, c.bytes(buffer)));
  } else {
    ts.push_back(c.comm.recv_from(root, c.op, buffer.data, c.bytes(buffer)));
  }
  exchange_descriptors(c, ts);
  c.comm.run(ts, c.op, c.deadline);
}

}  // namespace torch_npu_sim::dist
