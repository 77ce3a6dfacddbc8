#include "distributed/Health.h"

#include <c10/util/Exception.h>

namespace torch_npu_sim::dist {

const char* health_state_name(HealthState s) {
  switch (s) {
    case HealthState::Healthy: return "healthy";
    case HealthState::Failed: return "failed";
    case HealthState::Aborted: return "aborted";
    case HealthState::Closed: return "closed";
  }
  return "?";
}

bool GroupHealth::transition(HealthState to, std::vector<int> ranks, const std::string& why, bool local) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_.load() != HealthState::Healthy) return false;
    reason_ = why;
    local_ = local;
    ranks_ = std::move(ranks);
    state_.store(to, std::memory_order_release);
  }
  if (on_change) on_change();
  return true;
}

bool GroupHealth::fail(std::vector<int> ranks, const std::string& why, bool local) {
  return transition(HealthState::Failed, std::move(ranks), why, local);
}

bool GroupHealth::abort(const std::string& why) {
  return transition(HealthState::Aborted, {}, why);
}

void GroupHealth::close() {
  if (!transition(HealthState::Closed, {}, "the process group was destroyed")) {
    std::lock_guard<std::mutex> lock(mutex_);
    state_.store(HealthState::Closed, std::memory_order_release);
  }
}

std::string GroupHealth::reason() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return reason_;
}

std::vector<int> GroupHealth::failed_ranks() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return ranks_;
}

void GroupHealth::throw_error() const {
  std::string msg = "npusim process group '" + group_ + "' is " +
                    health_state_name(state_.load()) + ": " + reason();
  C10_THROW_ERROR(DistBackendError, msg);
}

void GroupHealth::throw_if_unhealthy() const {
  if (!healthy()) throw_error();
}

}  // namespace torch_npu_sim::dist
