// Ranks of one host read each other's device buffers in place, through the runtime's IPC
// handles (as CUDA IPC / peer-to-peer access does): a large collective then moves each
// byte once, with a few small messages to order its phases, instead of streaming every
// byte through the transport's rings.
#pragma once

#include <memory>
#include <vector>

#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {

// NPUSIM_PEER_ACCESS: 1 (default) or 0, collectives always stream through the transport.
// Throws std::invalid_argument on anything else.
bool peer_access_from_env();

class PeerBuffers {
 public:
  // Every rank's `bytes`-long buffer at `mine`, mapped here, exchanged in a round of small
  // messages at `step` (and `step + 1` the first time a group tries). nullptr, on every
  // rank alike, when some rank's buffer cannot be shared or the group is not on one host.
  static std::unique_ptr<PeerBuffers> open(CollectiveContext& c, void* mine, size_t bytes, uint8_t step);
  ~PeerBuffers();
  PeerBuffers(const PeerBuffers&) = delete;
  PeerBuffers& operator=(const PeerBuffers&) = delete;

  uint8_t* of(int rank) const { return ptrs_[rank]; }

 private:
  PeerBuffers() = default;
  std::vector<uint8_t*> ptrs_;
  std::vector<bool> mapped_;  // opened through the runtime (to close)
};

// The buffers at `offset` in the order the streamed algorithms combine them: this rank's
// own first, then the peers in rank order, so both paths give the same bits.
std::vector<const void*> reduction_order(const PeerBuffers& peers, int world, int me, size_t offset);

// Empty messages to and from every peer at `step`: when it returns, every rank has done
// what it did before the round.
void sync_round(CollectiveContext& c, uint8_t step);

// Ends a collective that read peers' memory. "Done": every rank has finished reading. Then
// "release", which a rank sends only once it has every peer's "done": a rank that gets
// every release knows each owner was still in the collective, its buffer untouched, when
// the reads ended. An owner that leaves early (timeout, abort, a failed peer) sends no
// release, so a slow reader fails instead of returning what it read from a buffer already
// handed back to its program.
void end_peer_reads(CollectiveContext& c);

}  // namespace torch_npu_sim::dist
