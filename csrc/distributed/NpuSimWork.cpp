#include "distributed/NpuSimWork.h"

#include <ATen/core/ivalue.h>
#include <c10/util/Exception.h>

#include <algorithm>

namespace torch_npu_sim::dist {

NpuSimWork::NpuSimWork(int rank, c10d::OpType type, std::vector<at::Tensor> outputs)
    : c10d::Work(rank, type), outputs_(std::move(outputs)) {
  std::vector<c10::Device> devices;
  for (const auto& t : outputs_)
    if (t.defined() && t.device().is_privateuseone() &&
        std::find(devices.begin(), devices.end(), t.device()) == devices.end())
      devices.push_back(t.device());
  future_ = c10::make_intrusive<c10::ivalue::Future>(c10::ListType::create(c10::TensorType::get()), devices);
}

void NpuSimWork::complete(std::exception_ptr error) {
  if (error) {
    future_->setError(error);
  } else {
    future_->markCompleted(c10::IValue(outputs_));
  }
  finish(error);
}

bool NpuSimWork::wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (timeout == kNoTimeout) {
    cv_.wait(lock, [&] { return completed_; });
  } else if (!cv_.wait_for(lock, timeout, [&] { return completed_; })) {
    C10_THROW_ERROR(DistBackendError, "npusim: Timed out after " + std::to_string(timeout.count()) +
                                          " ms in Work.wait; the operation is still in flight");
  }
  if (exception_) std::rethrow_exception(exception_);
  return true;
}

int NpuSimWork::sourceRank() const {
  int rank = source_rank_.load();
  TORCH_CHECK(rank >= 0, "npusim: sourceRank() is known only for a completed recv from any source");
  return rank;
}

}  // namespace torch_npu_sim::dist
