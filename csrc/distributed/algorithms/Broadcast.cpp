// Broadcast: where the group can map each other's device memory (PeerMemory.h), every
// rank copies the root's buffer straight from it, all at once; else the root sends its
// buffer to every peer, one stream each.
#include <cstring>

#include "distributed/PeerMemory.h"
#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {
namespace {

bool broadcast_in_place(CollectiveContext& c, Span buffer, int root) {
  auto peers = PeerBuffers::open(c, buffer.data, c.bytes(buffer), kPeerHandlesStep);
  if (!peers) return false;
  if (c.rank() != root) std::memcpy(buffer.data, peers->of(root), c.bytes(buffer));
  end_peer_reads(c);  // every peer has read this rank's buffer, which may change after
  return true;
}

}  // namespace

void broadcast(CollectiveContext& c, Span buffer, int root) {
  if (c.world() > 1 && broadcast_in_place(c, buffer, root)) return;
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
