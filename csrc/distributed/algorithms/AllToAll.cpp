// All-to-all: inputs[p] goes to rank p, outputs[p] comes from rank p (sizes may differ
// per pair; each receiver checks the size it is sent against the size it expects).
#include <cstring>

#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {

void all_to_all(CollectiveContext& c, const std::vector<Span>& inputs, const std::vector<Span>& outputs) {
  const int me = c.rank();
  TORCH_CHECK(inputs[me].numel == outputs[me].numel, "npusim: all_to_all on rank ", me, " sends ",
              inputs[me].numel, " elements to itself but expects ", outputs[me].numel);
  std::memcpy(outputs[me].data, inputs[me].data, c.bytes(inputs[me]));
  std::vector<Transfer> ts;
  for (int p = 0; p < c.world(); ++p) {
    if (p == me) continue;
    ts.push_back(c.comm.send_to(p, c.op, inputs[p].data, c.bytes(inputs[p])));
    ts.back().header.reply_bytes = c.bytes(outputs[p]);
    ts.push_back(c.comm.recv_from(p, c.op, outputs[p].data, c.bytes(outputs[p])));
    ts.back().header.reply_bytes = c.bytes(inputs[p]);
  }
  c.comm.run(ts, c.op, c.deadline);
}

}  // namespace torch_npu_sim::dist
