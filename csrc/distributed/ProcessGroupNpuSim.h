// The c10d backend "npusim": c10d's Backend interface on top of the Communicator.
//
// Calls validate their arguments at once on the caller's thread (bad input is a
// ValueError/RuntimeError there, and nothing is sent), stage non-contiguous tensors, and
// queue the operation for the progress thread, which runs operations in call order and
// completes each Work (and its Future) when done. Point-to-point operations progress
// beside collectives, so batch_isend_irecv exchanges never deadlock.
//
// Files: ProcessGroupNpuSim.cpp (construction, progress thread, point-to-point),
// Collectives.cpp (one adapter per c10d collective), SparseAllReduce.cpp,
// MonitoredBarrier.cpp, ArgumentChecks (validation),
// Staging (tensors as the engine sees them), NpuSimWork (Work and its Future).
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "distributed/Communicator.h"
#include "distributed/NpuSimWork.h"

namespace torch_npu_sim::dist {

class ProcessGroupNpuSim : public c10d::Backend {
 public:
  ProcessGroupNpuSim(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                     std::chrono::milliseconds timeout, std::string group_name);
  ~ProcessGroupNpuSim() override;

  const std::string getBackendName() const override { return "npusim"; }
  c10::intrusive_ptr<Options> getBackendOptions() override;
  void setTimeout(std::chrono::milliseconds timeout) override { timeout_ = timeout; }

  // dist.shrink_group: the ranks not excluded form a new group, joined afresh through the
  // same store (under a key prefix every survivor derives alike), so a dead peer's broken
  // streams and half-done messages never reach it. Only the survivors call it.
  bool supportsShrinking() const override { return true; }
  c10::intrusive_ptr<c10d::Backend> shrink(const std::vector<int64_t>& ranks_to_exclude, int shrink_flags = 0,
                                           const c10::intrusive_ptr<Options>& opts_override = nullptr) override;
  std::string transport_name() const { return comm_->transport_name(); }
  std::vector<std::string> peer_transports() const { return comm_->peer_transports(); }
  std::string peer_access() const {
    switch (comm_->peer_access.load()) {
      case Communicator::PeerAccess::Yes: return "yes";
      case Communicator::PeerAccess::No: return "no";
      default: return "unknown";
    }
  }
  // Why the group stopped working, for recovery code: the ranks named by the first
  // failure (a dead, stopped or mismatched peer; this rank for a local error) and the state.
  std::vector<int> failed_ranks() const { return comm_->health().failed_ranks(); }
  const char* health_state() const { return health_state_name(comm_->health().state()); }
  // At interpreter exit: every live group of this process leaves (goodbye to its peers,
  // in-flight work failed), so that peers still waiting on this rank fail at once instead
  // of after the rest of the process's teardown.
  static void leave_all_groups_at_exit();

  c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& tensors, const c10d::BroadcastOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& tensors, const c10d::AllreduceOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allreduce_coalesced(std::vector<at::Tensor>& tensors,
                                                     const c10d::AllreduceCoalescedOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> reduce(std::vector<at::Tensor>& tensors, const c10d::ReduceOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allgather(std::vector<std::vector<at::Tensor>>& outputs, std::vector<at::Tensor>& inputs,
                                           const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> _allgather_base(at::Tensor& output, at::Tensor& input,
                                                 const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allgather_coalesced(std::vector<std::vector<at::Tensor>>& outputs,
                                                     std::vector<at::Tensor>& inputs,
                                                     const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allgather_into_tensor_coalesced(std::vector<at::Tensor>& outputs,
                                                                 std::vector<at::Tensor>& inputs,
                                                                 const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> gather(std::vector<std::vector<at::Tensor>>& outputs, std::vector<at::Tensor>& inputs,
                                        const c10d::GatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> scatter(std::vector<at::Tensor>& outputs, std::vector<std::vector<at::Tensor>>& inputs,
                                         const c10d::ScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> reduce_scatter(std::vector<at::Tensor>& outputs,
                                                std::vector<std::vector<at::Tensor>>& inputs,
                                                const c10d::ReduceScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> _reduce_scatter_base(at::Tensor& output, at::Tensor& input,
                                                      const c10d::ReduceScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> reduce_scatter_tensor_coalesced(std::vector<at::Tensor>& outputs,
                                                                 std::vector<at::Tensor>& inputs,
                                                                 const c10d::ReduceScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> alltoall_base(at::Tensor& output, at::Tensor& input,
                                               std::vector<int64_t>& output_splits,
                                               std::vector<int64_t>& input_splits,
                                               const c10d::AllToAllOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> alltoall(std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs,
                                          const c10d::AllToAllOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> send(std::vector<at::Tensor>& tensors, int dst, int tag) override;
  c10::intrusive_ptr<c10d::Work> recv(std::vector<at::Tensor>& tensors, int src, int tag) override;
  c10::intrusive_ptr<c10d::Work> recvAnysource(std::vector<at::Tensor>& tensors, int tag) override;
  c10::intrusive_ptr<c10d::Work> barrier(const c10d::BarrierOptions& opts) override;
  void monitoredBarrier(const c10d::BarrierOptions& opts, bool wait_all_ranks) override;

  // torch.distributed._time_estimator: between start and end, collectives are not run (no
  // message, no sequence number) and their modelled times add up; end returns the sum in
  // microseconds, the unit NCCL's estimator reports.
  bool supportsTimeEstimation() const override { return true; }
  void start_time_estimate();
  double end_time_estimate();

  void setSequenceNumberForGroup() override {}
  uint64_t getSequenceNumberForGroup() override { return seq_; }
  c10d::ErrorType getError() override;
  void abort() override;
  void shutdown() override;

 private:
  using Body = std::function<void(Clock::time_point deadline)>;
  c10::intrusive_ptr<c10d::Work> allreduce_sparse(at::Tensor& tensor, const c10d::AllreduceOptions& opts);
  void refuse_during_capture(const std::string& what) const;
  // While the calling thread's current npusim stream captures a graph, a collective is
  // recorded, not run: each replay issues it again on the same tensors (the graph's
  // memory) and waits for it, which the group's timeout bounds, so the graph's later nodes
  // read its result (as NCCL kernels captured in a CUDA graph). Capture gets a done Work.
  bool capturing() const;
  c10::intrusive_ptr<c10d::Work> record_for_replay(c10d::OpType type, std::vector<at::Tensor> outputs,
                                                   std::function<c10::intrusive_ptr<c10d::Work>()> issue);
  c10::intrusive_ptr<c10d::Work> enqueue(c10d::OpType type, std::vector<at::Tensor> outputs,
                                         std::chrono::milliseconds timeout, Body body);
  c10::intrusive_ptr<c10d::Work> enqueue_p2p(c10d::OpType type, at::Tensor tensor, int peer, int tag, bool is_send);
  OpDesc next_op(OpKind kind, const at::Tensor& like, uint64_t numel, uint8_t reduce_op = 0, int root = -1);
  void run_worker();
  void stop_worker(bool drain);
  std::chrono::milliseconds effective(std::chrono::milliseconds t) const;

  struct Job {
    c10::intrusive_ptr<NpuSimWork> work;
    std::chrono::milliseconds timeout;
    Body body;                                 // a collective, run on the progress thread
    std::function<Transfer()> make_transfer;  // or a point-to-point message to post
  };

  c10::intrusive_ptr<c10d::Store> store_;
  std::unique_ptr<Communicator> comm_;
  std::chrono::milliseconds timeout_;
  uint32_t shrinks_ = 0;  // this group's shrink count: part of the next shrunk group's store prefix
  std::string group_name_;
  uint64_t seq_ = 0;
  bool estimating_ = false;    // inside _time_estimator (guarded by mutex_)
  uint64_t estimated_ns_ = 0;
  uint32_t monitored_barrier_calls_ = 0;
  std::vector<uint64_t> p2p_send_seq_, p2p_recv_seq_;
  std::mutex mutex_;  // guards queue_, stop_, sequence numbers
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stop_ = false;
  bool shut_down_ = false;
  std::thread worker_;
};

}  // namespace torch_npu_sim::dist
