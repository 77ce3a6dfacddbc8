// Joining a group: everything is exchanged through the c10d Store handed to the backend
// (so torchrun works unchanged across machines), then ranks connect directly.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "distributed/Communicator.h"

namespace torch_npu_sim::dist {

// The c10d Store seen through the few calls rendezvous needs.
struct KeyValueStore {
  std::function<void(const std::string&, const std::string&)> set;
  std::function<std::string(const std::string&)> get;
  std::function<int64_t(const std::string&, int64_t)> add;
  // Waits until the key exists; false when the timeout passes.
  std::function<bool(const std::string&, std::chrono::milliseconds)> wait;
};

// Environment (checked on every rank; a bad value fails every rank at once, named):
//   NPUSIM_TRANSPORT      auto (default: shared memory between ranks on one host, TCP
//                         between hosts, chosen per pair), shm (all ranks must share a
//                         host), or tcp. Rank 0's setting decides for the group.
//   NPUSIM_HOST_ID        names this rank's host (letters, digits, '._:-'); ranks with equal
//                         names share memory. Default: detected from the boot id, network
//                         namespace, host name and /dev/shm device.
//   NPUSIM_SOCKET_ADDR    the only address this rank listens on, and advertises
//                         (default 127.0.0.1 on one host; else the route to MASTER_ADDR
//                         or the host name's address).
//   NPUSIM_SHM_RING_BYTES capacity of each shared-memory stream (default 1 MiB; 4 KiB to
//                         1 GiB, a multiple of 64; same on every rank).
//   NPUSIM_PEER_TIMEOUT   seconds of silence after which a peer is declared hung
//                         (default 0: only the group timeout applies; else 1 to 86400).
//   NPUSIM_CHECKSUM       1: every payload carries a CRC32C checked by its receiver (a
//                         corrupted byte fails the group, named); 0 (default). Rank 0's
//                         setting decides for the group.
//   NPUSIM_PEER_ACCESS    1 (default): large collectives among the ranks of one host read
//                         peers' device memory in place (PeerMemory.h); 0: they stream.
//   NPUSIM_FAULTS         fault-injection rules (FaultInjection.h), read at the first group.
std::unique_ptr<Communicator> rendezvous(const KeyValueStore& store, const GroupConfig& config);

}  // namespace torch_npu_sim::dist
