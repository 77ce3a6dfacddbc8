// All-gather: every rank copies each peer's input straight from the peer's device memory
// where the group can map it (PeerMemory.h), else every rank sends its input to every peer.
#include <cstring>

#include "distributed/PeerMemory.h"
#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {
namespace {

bool all_gather_in_place(CollectiveContext& c, Span input, const std::vector<Span>& outputs) {
  auto peers = PeerBuffers::open(c, input.data, c.bytes(input), kPeerHandlesStep);
  if (!peers) return false;
  for (int p = 0; p < c.world(); ++p)
    if (p != c.rank()) std::memcpy(outputs[p].data, peers->of(p), c.bytes(outputs[p]));
  end_peer_reads(c);  // every peer has read this rank's buffer, which may change after
  return true;
}

}  // namespace

void all_gather_streamed(CollectiveContext& c, Span input, const std::vector<Span>& outputs) {
  const int me = c.rank();
  std::vector<Transfer> ts;
  for (int p = 0; p < c.world(); ++p) {
    if (p == me) continue;
    ts.push_back(c.comm.send_to(p, c.op, input.data, c.bytes(input)));
    ts.push_back(c.comm.recv_from(p, c.op, outputs[p].data, c.bytes(outputs[p])));
  }
  c.comm.run(ts, c.op, c.deadline);
}

void all_gather(CollectiveContext& c, Span input, const std::vector<Span>& outputs) {
  const int me = c.rank();
  if (outputs[me].data != input.data) std::memcpy(outputs[me].data, input.data, c.bytes(input));
  if (c.world() > 1 && all_gather_in_place(c, input, outputs)) return;
  all_gather_streamed(c, input, outputs);
}

}  // namespace torch_npu_sim::dist
