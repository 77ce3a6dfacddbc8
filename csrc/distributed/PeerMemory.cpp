#include "distributed/PeerMemory.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/BlockCache.h"
#include "npusim_runtime.h"

namespace torch_npu_sim::dist {
namespace {

using PeerAccess = Communicator::PeerAccess;

bool handle_valid(const npusimIpcMemHandle_t& h) {
  for (unsigned char b : h.bytes)
    if (b) return true;
  return false;  // all zero: the rank could not share its buffer
}

// Each rank tells every peer whether it mapped all their buffers; true when all did.
bool agree(CollectiveContext& c, bool mine, uint8_t step) {
  const int n = c.world(), me = c.rank();
  const uint8_t out = mine ? 1 : 0;
  std::vector<uint8_t> in(n, 1);
  std::vector<Transfer> ts;
  OpDesc op = c.at_step(step);
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    ts.push_back(c.comm.send_to(p, op, &out, 1));
    ts.back().control = true;
    ts.push_back(c.comm.recv_from(p, op, &in[p], 1));
  }
  c.comm.run(ts, op, c.deadline);
  bool all = mine;
  for (int p = 0; p < n; ++p) all = all && in[p] == 1;
  return all;
}

}  // namespace

bool peer_access_from_env() {
  const char* v = std::getenv("NPUSIM_PEER_ACCESS");
  if (!v || !*v || std::string(v) == "1") return true;
  if (std::string(v) == "0") return false;
  throw std::invalid_argument("NPUSIM_PEER_ACCESS=\"" + std::string(v) + "\" is not 0 or 1");
}

std::unique_ptr<PeerBuffers> PeerBuffers::open(CollectiveContext& c, void* mine, size_t bytes, uint8_t step) {
  Communicator& comm = c.comm;
  // A group spans hosts (or chose TCP) exactly when its transport is not pure shared
  // memory, on every rank alike.
  if (std::strcmp(comm.transport_name(), "shm") != 0) comm.peer_access = PeerAccess::No;
  // Smaller buffers stream (the same choice on every rank: sizes agree), and so does every
  // collective of a group that checks payloads (NPUSIM_CHECKSUM, agreed at rendezvous):
  // a checksum covers bytes on the wire, and in place nothing crosses a wire.
  if (bytes < NPUSIM_IPC_MIN_BYTES || comm.peer_access == PeerAccess::No || comm.checksum()) return nullptr;
  const int n = c.world(), me = c.rank();
  // The span must lie inside one live shareable block of the caching allocator, which says
  // so; otherwise (separate tensors side by side, CPU memory, a block made before sharing
  // was on) this rank sends an empty handle and the whole group streams. So does a rank
  // about to corrupt this collective's payload (fault injection): it has to cross a wire.
  npusimIpcMemHandle_t own{};
  const bool corrupting = comm.planned_fault(c.op) == FaultAction::Corrupt;
  if (corrupting || !cache().share(mine, bytes, &own)) own = npusimIpcMemHandle_t{};
  std::vector<npusimIpcMemHandle_t> handles(n);
  std::vector<Transfer> ts;
  OpDesc op = c.at_step(step);
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    ts.push_back(comm.send_to(p, op, &own, sizeof own));
    ts.back().control = true;
    ts.push_back(comm.recv_from(p, op, &handles[p], sizeof handles[p]));
  }
  comm.run(ts, op, c.deadline);
  if (!handle_valid(own)) return nullptr;
  for (int p = 0; p < n; ++p)
    if (p != me && !handle_valid(handles[p])) return nullptr;

  std::unique_ptr<PeerBuffers> peers(new PeerBuffers());
  peers->ptrs_.assign(n, nullptr);
  peers->mapped_.assign(n, false);
  peers->ptrs_[me] = static_cast<uint8_t*>(mine);
  int failed = -1;
  for (int p = 0; p < n && failed < 0; ++p) {
    if (p == me) continue;
    npusimError_t err = npusimSuccess;
    // every rank's span has this rank's length (the operation's descriptors agree)
    void* ptr = cache().open_peer(handles[p], bytes, &err);
    if (err != npusimSuccess) {
      failed = p;
      continue;
    }
    peers->ptrs_[p] = static_cast<uint8_t*>(ptr);
    peers->mapped_[p] = true;
  }
  if (comm.peer_access == PeerAccess::Unknown) {
    // Mapping a sibling's memory may be forbidden (e.g. by a sandbox): the first time, the
    // group agrees, so that no rank streams while another reads in place.
    bool all = agree(c, failed < 0, step + 1);
    comm.peer_access = all ? PeerAccess::Yes : PeerAccess::No;
    if (!all) return nullptr;
  } else if (failed >= 0) {
    comm.fail({failed}, "rank " + std::to_string(me) + " could not map the device memory of rank " +
                            std::to_string(failed) + " for " + describe(c.op));
  }
  comm.fault_at_read(c.op, "reading its peers' memory in " + describe(c.op));
  return peers;
}

PeerBuffers::~PeerBuffers() {
  for (size_t p = 0; p < ptrs_.size(); ++p)
    if (mapped_[p]) cache().close_peer(ptrs_[p]);
}

std::vector<const void*> reduction_order(const PeerBuffers& peers, int world, int me, size_t offset) {
  std::vector<const void*> order{peers.of(me) + offset};
  for (int p = 0; p < world; ++p)
    if (p != me) order.push_back(peers.of(p) + offset);
  return order;
}

void end_peer_reads(CollectiveContext& c) {
  sync_round(c, kPeerDoneStep);
  sync_round(c, kPeerReleaseStep);
}

void sync_round(CollectiveContext& c, uint8_t step) {
  OpDesc op = c.at_step(step);
  std::vector<Transfer> ts;
  for (int p = 0; p < c.world(); ++p) {
    if (p == c.rank()) continue;
    ts.push_back(c.comm.send_to(p, op, nullptr, 0));
    ts.push_back(c.comm.recv_from(p, op, nullptr, 0));
  }
  c.comm.run(ts, op, c.deadline);
}

}  // namespace torch_npu_sim::dist
