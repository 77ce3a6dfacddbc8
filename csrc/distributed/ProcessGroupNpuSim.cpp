#include "distributed/ProcessGroupNpuSim.h"

#include "core/Runtime.h"
#include "graphs/Capture.h"
#include "graphs/Graphs.h"
#include "distributed/SimCost.h"  // simulated time of collectives

#include <Python.h>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <c10/util/Exception.h>

#include <mutex>
#include <thread>
#include <set>

#include "distributed/ArgumentChecks.h"
#include "distributed/ErrorMessage.h"
#include "npusim_runtime.h"
#include "distributed/Rendezvous.h"
#include "distributed/Staging.h"
#include "distributed/algorithms/Algorithms.h"
#include "simulation/CostOnly.h"

namespace torch_npu_sim::dist {
namespace {

constexpr int kAnySource = -1;  // a receive's peer when it takes the first matching message

struct ReleaseGilIfHeld {
  PyThreadState* state = nullptr;
  ReleaseGilIfHeld() {
    if (Py_IsInitialized() && PyGILState_Check()) state = PyEval_SaveThread();
  }
  ~ReleaseGilIfHeld() {
    if (state) PyEval_RestoreThread(state);
  }
};

// Live groups of this process, so that an exiting process can say goodbye at once.
std::mutex live_groups_mutex;
std::set<ProcessGroupNpuSim*>& live_groups() {
  static auto* groups = new std::set<ProcessGroupNpuSim*>();  // never destroyed: used at exit
  return *groups;
}

}  // namespace

// ------------------------------------------------------------------- construction

ProcessGroupNpuSim::ProcessGroupNpuSim(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                       std::chrono::milliseconds timeout, std::string group_name)
    : c10d::Backend(rank, size),
      store_(store),
      timeout_(timeout),
      group_name_(std::move(group_name)),
      p2p_send_seq_(size, 0),
      p2p_recv_seq_(size, 0) {
  KeyValueStore kv;
  kv.set = [store](const std::string& k, const std::string& v) {
    store->set(k, std::vector<uint8_t>(v.begin(), v.end()));
  };
  kv.get = [store](const std::string& k) {
    auto v = store->get(k);
    return std::string(v.begin(), v.end());
  };
  kv.add = [store](const std::string& k, int64_t v) { return store->add(k, v); };
  kv.wait = [store](const std::string& k, std::chrono::milliseconds t) {
    // Polls with check(): the store's own wait() logs a warning each time a short wait
    // expires, and the rendezvous waits in short slices. A broken store (DistNetworkError)
    // propagates as is.
    auto deadline = std::chrono::steady_clock::now() + t;
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
      if (store->check({k})) return true;
      auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return false;
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
      pause = std::min(pause * 2, std::chrono::milliseconds(20));
    }
  };
  GroupConfig config;
  config.name = group_name_.empty() ? "default" : group_name_;
  config.rank = rank;
  config.world = size;
  config.timeout = timeout;
  comm_ = rendezvous(kv, config);
  worker_ = std::thread([this] { run_worker(); });
  init();
  std::lock_guard<std::mutex> lock(live_groups_mutex);
  live_groups().insert(this);
}

ProcessGroupNpuSim::~ProcessGroupNpuSim() {
  {
    std::lock_guard<std::mutex> lock(live_groups_mutex);
    live_groups().erase(this);
  }
  try {
    stop_worker(/*drain=*/true);
  } catch (...) {
  }
}

void ProcessGroupNpuSim::leave_all_groups_at_exit() {
  std::lock_guard<std::mutex> lock(live_groups_mutex);
  for (ProcessGroupNpuSim* group : live_groups()) {
    try {
      group->stop_worker(/*drain=*/false);
    } catch (...) {
    }
  }
}

c10::intrusive_ptr<c10d::Backend::Options> ProcessGroupNpuSim::getBackendOptions() {
  return c10::make_intrusive<Options>("npusim", timeout_);
}

c10d::ErrorType ProcessGroupNpuSim::getError() {
  return comm_->health().healthy() ? c10d::ErrorType::SUCCESS : c10d::ErrorType::COMM_ERROR;
}

void ProcessGroupNpuSim::abort() {
  // Non-blocking: in-flight and queued operations fail at once; threads wind down later.
  comm_->health().abort("the process group was aborted on rank " + std::to_string(rank_));
  cv_.notify_all();
}

void ProcessGroupNpuSim::shutdown() { stop_worker(/*drain=*/true); }

c10::intrusive_ptr<c10d::Backend> ProcessGroupNpuSim::shrink(const std::vector<int64_t>& ranks_to_exclude,
                                                             int shrink_flags, const c10::intrusive_ptr<Options>& opts) {
  constexpr int kShrinkAbort = 0x01;  // torch.distributed.SHRINK_ABORT
  std::vector<bool> excluded(size_, false);
  std::string excluded_list;
  for (int64_t r : ranks_to_exclude) {
    TORCH_CHECK_VALUE(r >= 0 && r < size_, "npusim: shrink: rank ", r, " is out of range for a group of ", size_);
    TORCH_CHECK_VALUE(!excluded[r], "npusim: shrink: rank ", r, " is excluded twice");
    TORCH_CHECK_VALUE(r != rank_, "npusim: shrink: rank ", rank_, " excludes itself; only the ranks that stay call shrink");
    excluded[r] = true;
    excluded_list += (excluded_list.empty() ? "" : ",") + std::to_string(r);
  }
  TORCH_CHECK_VALUE(!ranks_to_exclude.empty(), "npusim: shrink: no rank to exclude");
  int new_rank = 0, new_size = 0;
  for (int r = 0; r < size_; ++r) {
    if (excluded[r]) continue;
    if (r < rank_) ++new_rank;
    ++new_size;
  }
  // In-flight work of this group cannot finish without the excluded ranks: with
  // SHRINK_ABORT it fails now instead of at its timeout.
  if (shrink_flags & kShrinkAbort) abort();
  auto timeout = opts && opts->timeout.count() > 0 ? opts->timeout : timeout_;
  std::string tag = "shrink" + std::to_string(shrinks_++) + "[" + excluded_list + "]";
  auto store = c10::make_intrusive<c10d::PrefixStore>("npusim/" + tag, store_);
  ReleaseGilIfHeld no_gil;  // the join waits on the other survivors
  return c10::make_intrusive<ProcessGroupNpuSim>(store, new_rank, new_size, timeout,
                                                 (group_name_.empty() ? "default" : group_name_) + "/" + tag);
}

void ProcessGroupNpuSim::stop_worker(bool drain) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (shut_down_) return;
    shut_down_ = true;
    stop_ = true;
  }
  if (!drain) comm_->health().abort("the process group was destroyed");
  cv_.notify_all();
  comm_->transport().interrupt();
  if (worker_.joinable()) {
    // Dropped from Python (`del pg`), this runs with the GIL held, while the worker may
    // need the GIL to free the last reference of a tensor Python knows: let go of it.
    ReleaseGilIfHeld no_gil;
    worker_.join();
  }
  if (comm_->p2p_pending()) {
    try {
      C10_THROW_ERROR(DistBackendError, "npusim: the process group was destroyed before this send/recv completed");
    } catch (...) {
      comm_->fail_p2p(std::current_exception());
    }
  }
  comm_->leave();
  comm_->health().close();
}

std::chrono::milliseconds ProcessGroupNpuSim::effective(std::chrono::milliseconds t) const {
  return t.count() > 0 ? t : timeout_;
}

// ---------------------------------------------------------------- progress thread

bool ProcessGroupNpuSim::capturing() const {
  return graphs::capture_underway() && graphs::current_stream_capturing(static_cast<c10::DeviceIndex>(current_device()));
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::record_for_replay(
    c10d::OpType type, std::vector<at::Tensor> outputs, std::function<c10::intrusive_ptr<c10d::Work>()> issue) {
  comm_->health().throw_if_unhealthy();
  auto self = c10::intrusive_ptr<ProcessGroupNpuSim>::reclaim_copy(this);  // the graph keeps its group
  graphs::record_host_function(static_cast<c10::DeviceIndex>(current_device()), "c10d::" + c10d::opTypeToString(type),
                               [self, issue = std::move(issue)] { issue()->wait(); });
  auto work = c10::make_intrusive<NpuSimWork>(rank_, type, std::move(outputs));
  work->complete(nullptr);
  return work;
}

// Point-to-point messages are not recorded (a replay waiting on each in turn could wait on
// a peer that waits on it): issuing one while the current stream captures is an error.
void ProcessGroupNpuSim::refuse_during_capture(const std::string& what) const {
  if (capturing())
    graphs::fail_uncapturable(what, "npusim graphs record collectives but not point-to-point messages; "
                              "issue it outside the capture");
}

namespace {
// the descriptor of the collective this thread is issuing (next_op, then enqueue)
thread_local OpDesc issuing_op;
}  // namespace

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::enqueue(c10d::OpType type, std::vector<at::Tensor> outputs,
                                                           std::chrono::milliseconds timeout, Body body) {
  TORCH_INTERNAL_ASSERT(!capturing(), "npusim: collective ", c10d::opTypeToString(type), " reached the queue while capturing");
  comm_->health().throw_if_unhealthy();
  auto work = c10::make_intrusive<NpuSimWork>(rank_, type, std::move(outputs));
  if (simulation::cost_only()) {
    // no payload moves, but the ranks still meet: an exchange of the op's descriptor, so that
    // mismatched collectives and dead peers fail as in a real run, and every wait stays bounded
    body = [this, op = issuing_op](Clock::time_point deadline) {
      CollectiveContext c{*comm_, op, c10::ScalarType::Byte, deadline};
      dist::barrier(c);
    };
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    TORCH_CHECK(!stop_, "npusim: the process group was destroyed");
    if (estimating_) {
      work->complete(nullptr);  // _time_estimator: nothing runs
      return work;
    }
    queue_.push_back(Job{work, effective(timeout), std::move(body), nullptr});
  }
  cv_.notify_one();
  comm_->transport().interrupt();  // the worker may be sleeping on point-to-point traffic
  return work;
}

OpDesc ProcessGroupNpuSim::next_op(OpKind kind, const at::Tensor& like, uint64_t numel, uint8_t reduce_op, int root) {
  OpDesc op;
  op.kind = kind;
  op.dtype = like.defined() ? static_cast<uint8_t>(wire_dtype(like)) : 0;
  op.numel = numel;
  op.reduce_op = reduce_op;
  op.root = root;
  std::lock_guard<std::mutex> lock(mutex_);
  if (estimating_) {
    estimated_ns_ += collective_cost_ns(kind, like, numel, size_);
    return op;
  }
  charge_collective_cost(kind, like, numel, size_);  // simulated time: the algorithm's alpha-beta cost (SimCost.h)
  op.seq = seq_++;
  issuing_op = op;
  return op;
}

void ProcessGroupNpuSim::start_time_estimate() {
  std::lock_guard<std::mutex> lock(mutex_);
  TORCH_CHECK(!estimating_, "npusim: a collective time estimate is already under way on this group");
  estimating_ = true;
  estimated_ns_ = 0;
}

double ProcessGroupNpuSim::end_time_estimate() {
  std::lock_guard<std::mutex> lock(mutex_);
  TORCH_CHECK(estimating_, "npusim: _end_time_estimate without _start_time_estimate");
  estimating_ = false;
  return static_cast<double>(estimated_ns_) / 1e3;
}

void ProcessGroupNpuSim::run_worker() {
  auto stop_driving = [this] {
    std::lock_guard<std::mutex> lock(mutex_);
    return stop_ || !queue_.empty();
  };
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      while (queue_.empty() && !stop_) {
        if (!comm_->p2p_pending()) {
          cv_.wait(lock);
          continue;
        }
        lock.unlock();
        try {
          npusimDeviceAccessScope device_access;  // protected memory: transfers read and write device memory
          comm_->drive_p2p(stop_driving);
        } catch (...) {
          comm_->fail_p2p(std::current_exception());
        }
        lock.lock();
      }
      if (queue_.empty()) return;  // stopping, nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      npusimDeviceAccessScope device_access;  // protected memory: collectives read and write device memory
      comm_->health().throw_if_unhealthy();
      if (job.make_transfer) {
        comm_->post(job.make_transfer());
      } else {
        comm_->set_op_timeout(job.timeout);
        job.body(Clock::now() + job.timeout);
        job.work->complete(nullptr);
      }
    } catch (...) {
      auto error = std::current_exception();
      // A local error half-way through a collective leaves the peers waiting for this
      // rank: fail the group so that they learn at once rather than at their timeout.
      if (comm_->health().healthy())
        comm_->health().fail({rank_}, "rank " + std::to_string(rank_) + " failed during an operation: " + message_of(error));
      job.work->complete(error);
      comm_->fail_p2p(error);
    }
  }
}

// ---------------------------------------------------------------- point-to-point

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::enqueue_p2p(c10d::OpType type, at::Tensor tensor, int peer,
                                                               int tag, bool is_send) {
  check_tensor(tensor, is_send ? "send" : "recv");
  refuse_during_capture(is_send ? "SEND" : "RECV");
  TORCH_CHECK_VALUE((peer >= 0 || (peer == kAnySource && !is_send)) && peer < size_, "npusim: ",
                    is_send ? "send to" : "recv from", " rank ", peer, " is out of range for a group of ", size_);
  TORCH_CHECK_VALUE(peer != rank_, "npusim: rank ", rank_, " cannot ", is_send ? "send to" : "recv from", " itself");
  comm_->health().throw_if_unhealthy();
  OpDesc op;
  op.kind = OpKind::Send;
  op.dtype = static_cast<uint8_t>(wire_dtype(tensor));
  op.numel = wire_numel(tensor);
  op.tag = static_cast<uint32_t>(tag);
  Staged s = stage(tensor, is_send);
  auto work = c10::make_intrusive<NpuSimWork>(rank_, type, std::vector<at::Tensor>{tensor});
  std::chrono::milliseconds timeout = timeout_;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    TORCH_CHECK(!stop_, "npusim: the process group was destroyed");
    op.seq = 0;  // point-to-point messages are matched by peer and tag, not by number
    Job job;
    job.work = work;
    job.timeout = timeout;
    Communicator* comm = comm_.get();
    job.make_transfer = [comm, s, op, peer, is_send, work, timeout]() {
      Span span = s.span();
      size_t bytes = span.numel * c10::elementSize(wire_dtype(s.flat));
      Transfer t = is_send ? comm->send_to(peer, op, span.data, bytes) : comm->recv_from(peer, op, span.data, bytes);
      t.deadline = Clock::now() + timeout;
      if (peer == kAnySource) t.on_matched = [work](int from) { work->set_source_rank(from); };
      t.on_done = [s, work, is_send](std::exception_ptr error) {
        if (!error && !is_send) {
          try {
            s.write_back();
          } catch (...) {
            error = std::current_exception();
          }
        }
        work->complete(error);
      };
      return t;
    };
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  comm_->transport().interrupt();
  return work;
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::send(std::vector<at::Tensor>& tensors, int dst, int tag) {
  return enqueue_p2p(c10d::OpType::SEND, single(tensors, "send"), dst, tag, true);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::recv(std::vector<at::Tensor>& tensors, int src, int tag) {
  return enqueue_p2p(c10d::OpType::RECV, single(tensors, "recv"), src, tag, false);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::recvAnysource(std::vector<at::Tensor>& tensors, int tag) {
  TORCH_CHECK_VALUE(size_ > 1, "npusim: recv from any source needs another rank in the group");
  return enqueue_p2p(c10d::OpType::RECVANYSOURCE, single(tensors, "recv"), kAnySource, tag, false);
}

}  // namespace torch_npu_sim::dist
