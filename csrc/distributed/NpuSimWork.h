// The Work of a ProcessGroupNpuSim operation: completed (or failed) by the progress
// thread, with a Future for DDP's comm hooks.
#pragma once

#include <torch/csrc/distributed/c10d/Work.hpp>

#include <atomic>
#include <vector>

namespace torch_npu_sim::dist {

class NpuSimWork : public c10d::Work {
 public:
  NpuSimWork(int rank, c10d::OpType type, std::vector<at::Tensor> outputs);
  bool wait(std::chrono::milliseconds timeout = kNoTimeout) override;
  // The future completes first; these read it, so a Work never looks pending after its
  // future said done.
  bool isCompleted() override { return future_->completed(); }
  bool isSuccess() const override { return future_->completed() && !future_->hasError(); }
  std::exception_ptr exception() const override { return future_->completed() ? future_->exception_ptr() : nullptr; }
  std::vector<at::Tensor> result() override { return outputs_; }
  c10::intrusive_ptr<c10::ivalue::Future> getFuture() override { return future_; }
  void complete(std::exception_ptr error);
  // recv from any source: the rank whose message was taken (c10d's Work::sourceRank)
  int sourceRank() const override;
  void set_source_rank(int rank) { source_rank_.store(rank); }

 private:
  std::vector<at::Tensor> outputs_;
  c10::intrusive_ptr<c10::ivalue::Future> future_;
  std::atomic<int> source_rank_{-1};
};

}  // namespace torch_npu_sim::dist
