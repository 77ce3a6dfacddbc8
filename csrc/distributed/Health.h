// The health of one process group as an explicit state machine:
//
//   Healthy --fail(ranks, why)--> Failed --abort()/close()--> Closed
//   Healthy --abort()-----------> Aborted
//
// The first failure wins and is never overwritten, so every later error on this rank
// names the original cause (the dead rank, the mismatch, the timeout). Any thread may
// report a failure; waiters learn of it through `on_change` (which interrupts them).
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace torch_npu_sim::dist {

enum class HealthState { Healthy, Failed, Aborted, Closed };
const char* health_state_name(HealthState s);

class GroupHealth {
 public:
  explicit GroupHealth(std::string group) : group_(std::move(group)) {}

  // Records the failure if the group is still healthy; returns true if it did.
  // `local`: found on this rank (and so to be announced to the peers), rather than
  // reported by a peer.
  bool fail(std::vector<int> ranks, const std::string& why, bool local = true);
  bool failure_is_local() const { return local_.load(); }
  bool abort(const std::string& why);
  void close();

  bool healthy() const { return state_.load(std::memory_order_acquire) == HealthState::Healthy; }
  HealthState state() const { return state_.load(std::memory_order_acquire); }
  std::string reason() const;
  std::vector<int> failed_ranks() const;

  // Throws c10::DistBackendError describing the cause if the group is not healthy.
  void throw_if_unhealthy() const;
  [[noreturn]] void throw_error() const;

  // Called after every transition (from the thread that made it).
  std::function<void()> on_change;

 private:
  bool transition(HealthState to, std::vector<int> ranks, const std::string& why, bool local = true);

  const std::string group_;
  std::atomic<HealthState> state_{HealthState::Healthy};
  std::atomic<bool> local_{true};
  mutable std::mutex mutex_;
  std::string reason_;
  std::vector<int> ranks_;
};

}  // namespace torch_npu_sim::dist
