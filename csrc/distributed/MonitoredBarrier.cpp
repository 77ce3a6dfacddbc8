// ProcessGroup.monitored_barrier on npusim, with gloo's protocol and messages: every rank
// but 0 reports to rank 0 and waits for its answer; rank 0 waits for each rank in turn
// (the time left of `timeout`, or the whole timeout per rank with wait_all_ranks), names
// the ranks that did not arrive, and on failure answers "failed" so that the ranks that
// did arrive fail at once rather than at the group's timeout. A zero timeout is a real
// zero (only an unset one means the group's).
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <sstream>

#include "distributed/ErrorMessage.h"
#include "distributed/ProcessGroupNpuSim.h"

namespace torch_npu_sim::dist {
namespace {

// Tags of monitored_barrier's messages (two per call): far above the tags programs use.
constexpr int kMonitoredBarrierTag = 0x6D620000;

}  // namespace

void ProcessGroupNpuSim::monitoredBarrier(const c10d::BarrierOptions& opts, bool wait_all_ranks) {
  using std::chrono::milliseconds;
  milliseconds limit = opts.timeout == c10d::kUnsetTimeout ? timeout_ : opts.timeout;
  int arrive_tag = kMonitoredBarrierTag + 2 * static_cast<int>(monitored_barrier_calls_++ % 0x8000);
  int release_tag = arrive_tag + 1;
  if (rank_ != 0) {
    at::Tensor token = at::zeros({1}, at::kLong);
    std::string error;
    try {
      std::vector<at::Tensor> arrive{at::full({1}, rank_, at::kLong)}, release{token};
      send(arrive, 0, arrive_tag)->wait();
      recv(release, 0, release_tag)->wait();
      if (token.item<int64_t>() < 0) error = "rank 0 failed the barrier (its error names the ranks that did not arrive)";
    } catch (const std::exception& e) {
      error = message_of(e);
    }
    TORCH_CHECK(error.empty(), "Rank ", rank_,
                " successfully reached monitoredBarrier, but received errors while waiting for send/recv from rank 0. "
                "Please check rank 0 logs for faulty rank.\n Original exception: \n", error);
    return;
  }

  auto release_all = [&](int64_t value) {
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (int peer = 1; peer < size_; ++peer) {
      std::vector<at::Tensor> t{at::full({1}, value, at::kLong)};
      try {
        works.push_back(send(t, peer, release_tag));
      } catch (const std::exception&) {  // a rank that cannot be told is already failing
      }
    }
    return works;
  };
  auto start = Clock::now();
  std::vector<c10::intrusive_ptr<c10d::Work>> arrivals(size_);
  std::vector<std::string> post_errors(size_);
  for (int peer = 1; peer < size_; ++peer) {
    std::vector<at::Tensor> t{at::zeros({1}, at::kLong)};
    try {
      arrivals[peer] = recv(t, peer, arrive_tag);
    } catch (const std::exception& e) {
      post_errors[peer] = message_of(e);
    }
  }
  std::vector<int> passed, failed;
  std::string failure;
  for (int peer = 1; peer < size_ && failure.empty(); ++peer) {
    milliseconds remaining = limit;
    if (!wait_all_ranks) {
      remaining = limit - std::chrono::duration_cast<milliseconds>(Clock::now() - start);
      if (remaining.count() <= 0) {
        std::ostringstream s;
        s << "Rank 0 timed out in monitoredBarrier after " << limit.count() << " ms.\n";
        if (passed.empty()) {
          s << "No ranks successfully processed in monitoredBarrier.";
        } else {
          s << "Successfully processed ranks: ";
          for (size_t i = 0; i < passed.size(); ++i) s << (i ? ", " : "") << passed[i];
        }
        failure = s.str();
        break;
      }
    }
    std::string error = post_errors[peer];
    if (error.empty()) {
      try {
        arrivals[peer]->wait(std::max(remaining, milliseconds(1)));  // 0 would mean "no limit"
        passed.push_back(peer);
        continue;
      } catch (const std::exception& e) {
        error = message_of(e);
      }
    }
    if (wait_all_ranks) {
      failed.push_back(peer);
    } else {
      failure = "[Rank 0]: Rank " + std::to_string(peer) + " failed to pass monitoredBarrier in " +
                std::to_string(limit.count()) + " ms\n Original exception: \n" + error;
    }
  }
  if (failure.empty() && !failed.empty()) {
    std::ostringstream s;
    s << "[Rank 0]: Ranks ";
    for (size_t i = 0; i < failed.size(); ++i) s << (i ? ", " : "") << failed[i];
    s << " failed to pass monitoredBarrier in " << limit.count() << " ms";
    failure = s.str();
  }
  if (!failure.empty()) {
    release_all(-1);
    TORCH_CHECK(false, failure);
  }
  for (auto& w : release_all(0)) w->wait();
}

}  // namespace torch_npu_sim::dist
