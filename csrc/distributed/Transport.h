// Byte streams between the ranks of a group, behind one small interface: shared memory
// among ranks on one host, TCP among hosts (per pair: a group may mix both). Both are non-blocking; the communicator
// drives many streams at once and sleeps in `wait` when none can move.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "distributed/Wire.h"

namespace torch_npu_sim::dist {

// A stream to `peer` broke (connection closed or reset): the peer died or left.
struct PeerLost : std::runtime_error {
  PeerLost(int peer, const std::string& what) : std::runtime_error(what), peer(peer) {}
  int peer;
};

// Which streams a waiter cares about (TCP polls exactly these).
struct Interest {
  int peer;
  Lane lane;
  bool send;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;

  // Move up to `len` bytes; return how many moved (0 when the stream is full or empty).
  virtual size_t try_send(int peer, Lane lane, const void* data, size_t len) = 0;
  virtual size_t try_recv(int peer, Lane lane, void* data, size_t len) = 0;

  // Zero-copy reads where the transport has the bytes in memory (shared memory): the
  // readable bytes at the head of the stream, contiguous, or nullptr; then consume(n).
  virtual const void* peek(int peer, Lane lane, size_t* available) {
    *available = 0;
    return nullptr;
  }
  virtual void consume(int peer, Lane lane, size_t n) {}

  // Waiting without lost wake-ups: take a ticket, try to make progress, and if none was
  // possible, wait(ticket): it returns at once if anything changed since the ticket.
  virtual uint64_t ticket() = 0;
  virtual void wait(uint64_t ticket, const std::vector<Interest>& interests,
                    std::chrono::microseconds timeout) = 0;
  // Waits at most `timeout` for one of `interests` (or interrupt()); true when one is
  // ready or it was interrupted, false when the time ran out (a mixed group's slices).
  virtual bool wait_ready(const std::vector<Interest>& interests, std::chrono::microseconds timeout) {
    wait(ticket(), interests, timeout);
    return true;
  }
  // Wakes this rank's waiter (thread-safe): new work, failure, abort.
  virtual void interrupt() = 0;
};

// A shared-memory segment created by rank 0 and mapped by all ranks.
struct ShmSegment {
  std::string name;
  void* base = nullptr;
  size_t bytes = 0;
  ~ShmSegment();
};
size_t shm_segment_bytes(int world, size_t ring_bytes);
// Rank 0: creates a private (0600), unguessably named segment; others: open and verify it.
std::unique_ptr<ShmSegment> shm_create(int world, size_t ring_bytes);
std::unique_ptr<ShmSegment> shm_open_existing(const std::string& name, int world, size_t ring_bytes);
void shm_unlink_quietly(const std::string& name);

std::unique_ptr<Transport> make_shm_transport(std::unique_ptr<ShmSegment> segment, int rank,
                                              int world, size_t ring_bytes);
// fds[peer][lane]: connected, authenticated sockets (-1 for this rank). Takes ownership.
std::unique_ptr<Transport> make_tcp_transport(std::vector<std::vector<int>> fds, int rank);
// A group spanning hosts: `shm` among this host's ranks (numbered by `shm_index[rank]`,
// -1 for ranks elsewhere), `tcp` (fds for the other ranks only) for the rest.
std::unique_ptr<Transport> make_mixed_transport(std::unique_ptr<Transport> shm, std::unique_ptr<Transport> tcp,
                                                std::vector<int> shm_index);

}  // namespace torch_npu_sim::dist
