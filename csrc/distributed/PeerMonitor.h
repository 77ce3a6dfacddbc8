// Failure detection over a control connection to every peer, on its own thread.
//
// A peer process that dies has its sockets closed by the kernel, so its death is seen
// here within milliseconds (no heartbeat timeout needed). A peer that leaves on purpose
// says goodbye first, so leaving is not mistaken for dying. Failures found by any rank
// (a dead peer, a mismatch, a timeout) are announced to all, so every rank fails with
// the same cause instead of waiting for its own timeout. Heartbeats tell a stopped or
// hung peer (alive, but silent) apart from one that is merely late.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "distributed/Health.h"

namespace torch_npu_sim::dist {

class PeerMonitor {
 public:
  // control_fds[peer]: connected sockets (-1 for this rank); takes ownership.
  PeerMonitor(int rank, std::vector<int> control_fds, GroupHealth& health,
              std::chrono::milliseconds heartbeat_timeout);
  ~PeerMonitor();

  void start();
  // Tells every peer about a failure found on this rank (thread-safe).
  void announce(const std::vector<int>& ranks, const std::string& why);
  // Says goodbye to every peer and stops the thread.
  void leave();

  // Peers that have not been heard from for `silence` or longer (stopped or hung).
  std::vector<int> silent_peers(std::chrono::milliseconds silence) const;
  bool has_left(int peer) const { return left_[peer].load(); }
  // Waits (bounded) until the monitor has read peer's control connection to its end, so
  // that whatever the peer announced before it went away has been taken into account.
  void wait_closed(int peer, std::chrono::milliseconds limit) const;

 private:
  enum FrameType : uint8_t { kHeartbeat = 1, kFailure = 2, kGoodbye = 3 };
  void run();
  void queue_frame(int peer, FrameType type, const std::string& payload);
  void flush_locked(int peer);
  void on_readable(int peer);
  void lost(int peer, const std::string& why);

  const int rank_;
  std::vector<int> fds_;
  GroupHealth& health_;
  const std::chrono::milliseconds heartbeat_timeout_;
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};

  mutable std::mutex out_mutex_;
  std::vector<std::string> outbox_;
  std::vector<std::string> inbox_;
  std::unique_ptr<std::atomic<bool>[]> left_;
  std::unique_ptr<std::atomic<bool>[]> closed_;
  std::unique_ptr<std::atomic<int64_t>[]> last_heard_ns_;
};

}  // namespace torch_npu_sim::dist
