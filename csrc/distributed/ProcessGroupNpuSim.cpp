#include "distributed/ProcessGroupNpuSim.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>

#include "distributed/Reduction.h"
#include "distributed/Rendezvous.h"
#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {
namespace {

// A tensor as the engine sees it: contiguous host memory (npusim device memory is host
// memory). Non-contiguous tensors go through a contiguous copy, written back after.
struct Staged {
  at::Tensor user;
  at::Tensor flat;
  Span span() const {
    at::Tensor t = flat.is_complex() ? at::view_as_real(flat) : flat;
    return {t.data_ptr(), static_cast<size_t>(t.numel())};
  }
  void write_back() const {
    if (!flat.is_same(user)) user.copy_(flat);
  }
};

Staged stage(const at::Tensor& t, bool copy_in, std::optional<double> scale = std::nullopt) {
  if (scale) return {t, at::mul(t, *scale).contiguous()};
  if (t.is_contiguous()) return {t, t};
  return {t, copy_in ? t.contiguous() : at::empty_like(t, at::MemoryFormat::Contiguous)};
}

c10::ScalarType wire_dtype(const at::Tensor& t) {
  return t.is_complex() ? c10::toRealValueType(t.scalar_type()) : t.scalar_type();
}

uint64_t wire_numel(const at::Tensor& t) { return static_cast<uint64_t>(t.numel()) * (t.is_complex() ? 2 : 1); }

void check_tensor(const at::Tensor& t, const char* op) {
  TORCH_CHECK_VALUE(t.defined(), "npusim: ", op, " got an undefined tensor");
  TORCH_CHECK_VALUE(t.layout() == at::kStrided, "npusim: ", op, " supports dense tensors only, got ", t.layout());
  TORCH_CHECK_VALUE(t.device().is_cpu() || t.device().is_privateuseone(), "npusim: ", op,
                    " takes cpu or npusim tensors, got a tensor on ", t.device());
}

// Every tensor of one collective on one device (as NCCL and gloo require of theirs).
void check_one_device(std::initializer_list<const std::vector<at::Tensor>*> lists, const char* op) {
  const at::Tensor* first = nullptr;
  for (const auto* list : lists)
    for (const auto& t : *list) {
      if (!t.defined()) continue;
      if (!first) first = &t;
      TORCH_CHECK_VALUE(t.device() == first->device(), "npusim: ", op, " needs all its tensors on one device, got ",
                        first->device(), " and ", t.device());
    }
}

const at::Tensor& single(const std::vector<at::Tensor>& ts, const char* op) {
  TORCH_CHECK_VALUE(ts.size() == 1, "npusim: ", op, " takes one tensor per rank, got ", ts.size());
  check_tensor(ts[0], op);
  return ts[0];
}

void check_like(const at::Tensor& t, const at::Tensor& like, const char* op, const char* what) {
  check_tensor(t, op);
  TORCH_CHECK_VALUE(t.scalar_type() == like.scalar_type(), "npusim: ", op, ": ", what, " has dtype ",
                    t.scalar_type(), " but the input has ", like.scalar_type());
  TORCH_CHECK_VALUE(t.numel() == like.numel(), "npusim: ", op, ": ", what, " has ", t.numel(),
                    " elements but the input has ", like.numel());
}

void check_list(const std::vector<at::Tensor>& ts, const at::Tensor& like, int world, const char* op, const char* what) {
  TORCH_CHECK_VALUE(static_cast<int>(ts.size()) == world, "npusim: ", op, " needs ", world, " ", what,
                    " (one per rank), got ", ts.size());
  for (const auto& t : ts) check_like(t, like, op, what);
}

void check_root(int64_t root, int world, const char* op) {
  TORCH_CHECK_VALUE(root >= 0 && root < world, "npusim: ", op, " root rank ", root,
                    " is out of range for a group of ", world);
}

void check_reduce(const at::Tensor& t, const c10d::ReduceOp& op, const char* name) {
  uint8_t r = op.op_;
  if (t.is_complex())
    TORCH_CHECK_VALUE(r == c10d::ReduceOp::SUM || r == c10d::ReduceOp::AVG || r == c10d::ReduceOp::PREMUL_SUM,
                      "npusim: ", name, " of complex tensors supports SUM, AVG and PREMUL_SUM only, got ",
                      reduce_op_name(r));
  const char* why = unsupported_reason(wire_dtype(t), r);
  TORCH_CHECK_VALUE(why == nullptr, "npusim: cannot ", name, " with ", reduce_op_name(r), " on ",
                    t.scalar_type(), " tensors: ", why);
}

std::optional<double> premul_factor(const c10d::ReduceOp& op) {
  if (op.op_ != c10d::ReduceOp::PREMUL_SUM) return std::nullopt;
  auto* s = dynamic_cast<c10d::PreMulSumSupplement*>(op.supplement_.get());
  TORCH_CHECK_VALUE(s, "npusim: PREMUL_SUM needs a factor (use torch.distributed._make_nccl_premul_sum)");
  return s->tensor_factor.defined() ? s->tensor_factor.item<double>() : s->double_factor;
}

std::vector<Span> spans(const std::vector<Staged>& staged) {
  std::vector<Span> out;
  for (const auto& s : staged) out.push_back(s.span());
  return out;
}

std::vector<Staged> stage_all(const std::vector<at::Tensor>& ts, bool copy_in) {
  std::vector<Staged> out;
  for (const auto& t : ts) out.push_back(stage(t, copy_in));
  return out;
}

void write_back_all(const std::vector<Staged>& staged) {
  for (const auto& s : staged) s.write_back();
}

std::string message_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const c10::Error& err) {
    return err.what_without_backtrace();
  } catch (const std::exception& err) {
    return err.what();
  } catch (...) {
    return "unknown error";
  }
}

}  // namespace

// ---------------------------------------------------------------------------- Work

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
    C10_THROW_ERROR(DistBackendError, "npusim: Work.wait timed out after " + std::to_string(timeout.count()) +
                                          " ms; the operation is still in flight");
  }
  if (exception_) std::rethrow_exception(exception_);
  return true;
}

// ------------------------------------------------------------------- construction

ProcessGroupNpuSim::ProcessGroupNpuSim(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                       std::chrono::milliseconds timeout, std::string group_name)
    : c10d::Backend(rank, size),
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
    try {
      store->wait({k}, t);
      return true;
    } catch (const c10::DistStoreError&) {
      return false;  // timed out; a broken store (DistNetworkError) propagates as is
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
}

ProcessGroupNpuSim::~ProcessGroupNpuSim() {
  try {
    stop_worker(/*drain=*/true);
  } catch (...) {
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
  if (worker_.joinable()) worker_.join();
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

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::enqueue(c10d::OpType type, std::vector<at::Tensor> outputs,
                                                           std::chrono::milliseconds timeout, Body body) {
  comm_->health().throw_if_unhealthy();
  auto work = c10::make_intrusive<NpuSimWork>(rank_, type, std::move(outputs));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    TORCH_CHECK(!stop_, "npusim: the process group was destroyed");
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
  op.seq = seq_++;
  return op;
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
      comm_->health().throw_if_unhealthy();
      if (job.make_transfer) {
        comm_->post(job.make_transfer());
      } else {
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

// ------------------------------------------------------------------- collectives

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::broadcast(std::vector<at::Tensor>& tensors,
                                                             const c10d::BroadcastOptions& opts) {
  const at::Tensor& t = single(tensors, "broadcast");
  check_root(opts.rootRank, size_, "broadcast");
  int root = static_cast<int>(opts.rootRank);
  OpDesc op = next_op(OpKind::Broadcast, t, wire_numel(t), 0, root);
  Staged s = stage(t, /*copy_in=*/rank_ == root);
  return enqueue(c10d::OpType::BROADCAST, tensors, opts.timeout, [this, s, op, root](Clock::time_point deadline) {
    CollectiveContext c{*comm_, op, wire_dtype(s.flat), deadline};
    dist::broadcast(c, s.span(), root);
    if (rank_ != root) s.write_back();
  });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::allreduce(std::vector<at::Tensor>& tensors,
                                                             const c10d::AllreduceOptions& opts) {
  const at::Tensor& t = single(tensors, "all_reduce");
  TORCH_CHECK_VALUE(!opts.sparseIndices.has_value(), "npusim: sparse all_reduce is not supported");
  check_reduce(t, opts.reduceOp, "all_reduce");
  OpDesc op = next_op(OpKind::AllReduce, t, wire_numel(t), opts.reduceOp.op_);
  Staged s = stage(t, true, premul_factor(opts.reduceOp));
  return enqueue(c10d::OpType::ALLREDUCE, tensors, opts.timeout, [this, s, op](Clock::time_point deadline) {
    CollectiveContext c{*comm_, op, wire_dtype(s.flat), deadline};
    dist::all_reduce(c, s.span());
    s.write_back();
  });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::allreduce_coalesced(std::vector<at::Tensor>& tensors,
                                                                       const c10d::AllreduceCoalescedOptions& opts) {
  check_one_device({&tensors}, "all_reduce_coalesced");
  TORCH_CHECK_VALUE(!tensors.empty(), "npusim: all_reduce_coalesced needs at least one tensor");
  std::vector<at::Tensor> flat_parts;
  for (const auto& t : tensors) {
    check_like(t, t, "all_reduce_coalesced", "tensor");
    TORCH_CHECK_VALUE(t.scalar_type() == tensors[0].scalar_type(),
                      "npusim: all_reduce_coalesced needs tensors of one dtype, got ", tensors[0].scalar_type(),
                      " and ", t.scalar_type());
    check_reduce(t, opts.reduceOp, "all_reduce_coalesced");
    flat_parts.push_back(t.reshape(-1));
  }
  auto factor = premul_factor(opts.reduceOp);
  at::Tensor flat = at::cat(flat_parts);
  if (factor) flat.mul_(*factor);
  OpDesc op = next_op(OpKind::AllReduce, flat, wire_numel(flat), opts.reduceOp.op_);
  return enqueue(c10d::OpType::ALLREDUCE_COALESCED, tensors, opts.timeout,
                 [this, flat, op, tensors](Clock::time_point deadline) {
                   Staged s{flat, flat};
                   CollectiveContext c{*comm_, op, wire_dtype(flat), deadline};
                   dist::all_reduce(c, s.span());
                   int64_t offset = 0;
                   for (const auto& t : tensors) {
                     t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
                     offset += t.numel();
                   }
                 });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::reduce(std::vector<at::Tensor>& tensors,
                                                          const c10d::ReduceOptions& opts) {
  const at::Tensor& t = single(tensors, "reduce");
  check_root(opts.rootRank, size_, "reduce");
  check_reduce(t, opts.reduceOp, "reduce");
  int root = static_cast<int>(opts.rootRank);
  OpDesc op = next_op(OpKind::Reduce, t, wire_numel(t), opts.reduceOp.op_, root);
  Staged s = stage(t, true, premul_factor(opts.reduceOp));
  return enqueue(c10d::OpType::REDUCE, tensors, opts.timeout, [this, s, op, root](Clock::time_point deadline) {
    CollectiveContext c{*comm_, op, wire_dtype(s.flat), deadline};
    dist::reduce(c, s.span(), root);
    if (rank_ == root) s.write_back();
  });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                                             std::vector<at::Tensor>& inputs,
                                                             const c10d::AllgatherOptions& opts) {
  if (outputs.size() == 1) check_one_device({&inputs, &outputs[0]}, "all_gather");
  const at::Tensor& in = single(inputs, "all_gather");
  TORCH_CHECK_VALUE(outputs.size() == 1, "npusim: all_gather takes one output list per rank, got ", outputs.size());
  check_list(outputs[0], in, size_, "all_gather", "output tensors");
  OpDesc op = next_op(OpKind::AllGather, in, wire_numel(in));
  Staged s = stage(in, true);
  std::vector<Staged> outs = stage_all(outputs[0], false);
  return enqueue(c10d::OpType::ALLGATHER, outputs[0], opts.timeout, [this, s, outs, op](Clock::time_point deadline) {
    CollectiveContext c{*comm_, op, wire_dtype(s.flat), deadline};
    dist::all_gather(c, s.span(), spans(outs));
    write_back_all(outs);
  });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::_allgather_base(at::Tensor& output, at::Tensor& input,
                                                                   const c10d::AllgatherOptions& opts) {
  std::vector<at::Tensor> both{input, output};
  check_one_device({&both}, "all_gather_into_tensor");
  check_tensor(input, "all_gather_into_tensor");
  check_tensor(output, "all_gather_into_tensor");
  TORCH_CHECK_VALUE(output.scalar_type() == input.scalar_type(), "npusim: all_gather_into_tensor: output dtype ",
                    output.scalar_type(), " differs from input dtype ", input.scalar_type());
  TORCH_CHECK_VALUE(output.numel() == input.numel() * size_, "npusim: all_gather_into_tensor: output has ",
                    output.numel(), " elements but needs ", input.numel() * size_, " (", size_, " x ",
                    input.numel(), ")");
  OpDesc op = next_op(OpKind::AllGather, input, wire_numel(input));
  Staged s = stage(input, true);
  Staged o = stage(output, false);
  return enqueue(c10d::OpType::_ALLGATHER_BASE, {output}, opts.timeout, [this, s, o, op](Clock::time_point deadline) {
    CollectiveContext c{*comm_, op, wire_dtype(s.flat), deadline};
    Span out = o.span();
    dist::all_gather(c, s.span(), dist::split(out.data, out.numel, c.esize(), size_));
    o.write_back();
  });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::allgather_coalesced(std::vector<std::vector<at::Tensor>>& outputs,
                                                                       std::vector<at::Tensor>& inputs,
                                                                       const c10d::AllgatherOptions& opts) {
  TORCH_CHECK_VALUE(outputs.size() == inputs.size(), "npusim: all_gather_coalesced needs one output list per input");
  std::vector<OpDesc> ops;
  std::vector<Staged> ins;
  std::vector<std::vector<Staged>> outs;
  std::vector<at::Tensor> all_outputs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    check_tensor(inputs[i], "all_gather_coalesced");
    check_list(outputs[i], inputs[i], size_, "all_gather_coalesced", "output tensors");
    ops.push_back(next_op(OpKind::AllGather, inputs[i], wire_numel(inputs[i])));
    ins.push_back(stage(inputs[i], true));
    outs.push_back(stage_all(outputs[i], false));
    all_outputs.insert(all_outputs.end(), outputs[i].begin(), outputs[i].end());
  }
  return enqueue(c10d::OpType::ALLGATHER_COALESCED, all_outputs, opts.timeout,
                 [this, ins, outs, ops](Clock::time_point deadline) {
                   for (size_t i = 0; i < ins.size(); ++i) {
                     CollectiveContext c{*comm_, ops[i], wire_dtype(ins[i].flat), deadline};
                     dist::all_gather(c, ins[i].span(), spans(outs[i]));
                     write_back_all(outs[i]);
                   }
                 });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::allgather_into_tensor_coalesced(std::vector<at::Tensor>& outputs,
                                                                                   std::vector<at::Tensor>& inputs,
                                                                                   const c10d::AllgatherOptions& opts) {
  TORCH_CHECK_VALUE(outputs.size() == inputs.size(), "npusim: all_gather_into_tensor_coalesced needs one output per input");
  std::vector<OpDesc> ops;
  std::vector<Staged> ins, outs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    check_tensor(inputs[i], "all_gather_into_tensor_coalesced");
    check_tensor(outputs[i], "all_gather_into_tensor_coalesced");
    TORCH_CHECK_VALUE(outputs[i].scalar_type() == inputs[i].scalar_type() && outputs[i].numel() == inputs[i].numel() * size_,
                      "npusim: all_gather_into_tensor_coalesced: output ", i, " must have the input's dtype and ",
                      size_, "x its elements");
    ops.push_back(next_op(OpKind::AllGather, inputs[i], wire_numel(inputs[i])));
    ins.push_back(stage(inputs[i], true));
    outs.push_back(stage(outputs[i], false));
  }
  return enqueue(c10d::OpType::COALESCED, outputs, opts.timeout, [this, ins, outs, ops](Clock::time_point deadline) {
    for (size_t i = 0; i < ins.size(); ++i) {
      CollectiveContext c{*comm_, ops[i], wire_dtype(ins[i].flat), deadline};
      Span out = outs[i].span();
      dist::all_gather(c, ins[i].span(), dist::split(out.data, out.numel, c.esize(), size_));
      outs[i].write_back();
    }
  });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::gather(std::vector<std::vector<at::Tensor>>& outputs,
                                                          std::vector<at::Tensor>& inputs,
                                                          const c10d::GatherOptions& opts) {
  if (outputs.size() == 1) check_one_device({&inputs, &outputs[0]}, "gather");
  const at::Tensor& in = single(inputs, "gather");
  check_root(opts.rootRank, size_, "gather");
  int root = static_cast<int>(opts.rootRank);
  std::vector<Staged> outs;
  std::vector<at::Tensor> result;
  if (rank_ == root) {
    TORCH_CHECK_VALUE(outputs.size() == 1, "npusim: gather on the root takes one output list, got ", outputs.size());
    check_list(outputs[0], in, size_, "gather", "output tensors");
    outs = stage_all(outputs[0], false);
    result = outputs[0];
  } else {
    TORCH_CHECK_VALUE(outputs.empty() || (outputs.size() == 1 && outputs[0].empty()),
                      "npusim: gather takes output tensors on the root rank only");
  }
  OpDesc op = next_op(OpKind::Gather, in, wire_numel(in), 0, root);
  Staged s = stage(in, true);
  return enqueue(c10d::OpType::GATHER, result, opts.timeout, [this, s, outs, op, root](Clock::time_point deadline) {
    CollectiveContext c{*comm_, op, wire_dtype(s.flat), deadline};
    dist::gather(c, s.span(), spans(outs), root);
    write_back_all(outs);
  });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::scatter(std::vector<at::Tensor>& outputs,
                                                           std::vector<std::vector<at::Tensor>>& inputs,
                                                           const c10d::ScatterOptions& opts) {
  if (inputs.size() == 1) check_one_device({&outputs, &inputs[0]}, "scatter");
  const at::Tensor& out = single(outputs, "scatter");
  check_root(opts.rootRank, size_, "scatter");
  int root = static_cast<int>(opts.rootRank);
  std::vector<Staged> ins;
  if (rank_ == root) {
    TORCH_CHECK_VALUE(inputs.size() == 1, "npusim: scatter on the root takes one input list, got ", inputs.size());
    check_list(inputs[0], out, size_, "scatter", "input tensors");
    ins = stage_all(inputs[0], true);
  } else {
    TORCH_CHECK_VALUE(inputs.empty() || (inputs.size() == 1 && inputs[0].empty()),
                      "npusim: scatter takes input tensors on the root rank only");
  }
  OpDesc op = next_op(OpKind::Scatter, out, wire_numel(out), 0, root);
  Staged o = stage(out, false);
  return enqueue(c10d::OpType::SCATTER, outputs, opts.timeout, [this, ins, o, op, root](Clock::time_point deadline) {
    CollectiveContext c{*comm_, op, wire_dtype(o.flat), deadline};
    dist::scatter(c, spans(ins), o.span(), root);
    o.write_back();
  });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::reduce_scatter(std::vector<at::Tensor>& outputs,
                                                                  std::vector<std::vector<at::Tensor>>& inputs,
                                                                  const c10d::ReduceScatterOptions& opts) {
  if (inputs.size() == 1) check_one_device({&outputs, &inputs[0]}, "reduce_scatter");
  const at::Tensor& out = single(outputs, "reduce_scatter");
  TORCH_CHECK_VALUE(inputs.size() == 1, "npusim: reduce_scatter takes one input list per rank, got ", inputs.size());
  check_list(inputs[0], out, size_, "reduce_scatter", "input tensors");
  check_reduce(out, opts.reduceOp, "reduce_scatter");
  auto factor = premul_factor(opts.reduceOp);
  std::vector<Staged> ins;
  for (const auto& t : inputs[0]) ins.push_back(stage(t, true, factor));
  OpDesc op = next_op(OpKind::ReduceScatter, out, wire_numel(out), opts.reduceOp.op_);
  Staged o = stage(out, false);
  return enqueue(c10d::OpType::REDUCE_SCATTER, outputs, opts.timeout, [this, ins, o, op](Clock::time_point deadline) {
    CollectiveContext c{*comm_, op, wire_dtype(o.flat), deadline};
    dist::reduce_scatter(c, spans(ins), o.span());
    o.write_back();
  });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::_reduce_scatter_base(at::Tensor& output, at::Tensor& input,
                                                                        const c10d::ReduceScatterOptions& opts) {
  std::vector<at::Tensor> both{input, output};
  check_one_device({&both}, "reduce_scatter_tensor");
  check_tensor(input, "reduce_scatter_tensor");
  check_tensor(output, "reduce_scatter_tensor");
  TORCH_CHECK_VALUE(output.scalar_type() == input.scalar_type(), "npusim: reduce_scatter_tensor: output dtype ",
                    output.scalar_type(), " differs from input dtype ", input.scalar_type());
  TORCH_CHECK_VALUE(input.numel() == output.numel() * size_, "npusim: reduce_scatter_tensor: input has ",
                    input.numel(), " elements but needs ", output.numel() * size_, " (", size_, " x ",
                    output.numel(), ")");
  check_reduce(output, opts.reduceOp, "reduce_scatter_tensor");
  OpDesc op = next_op(OpKind::ReduceScatter, output, wire_numel(output), opts.reduceOp.op_);
  Staged i = stage(input, true, premul_factor(opts.reduceOp));
  Staged o = stage(output, false);
  return enqueue(c10d::OpType::_REDUCE_SCATTER_BASE, {output}, opts.timeout, [this, i, o, op](Clock::time_point deadline) {
    CollectiveContext c{*comm_, op, wire_dtype(o.flat), deadline};
    Span in = i.span();
    dist::reduce_scatter(c, dist::split(in.data, in.numel, c.esize(), size_), o.span());
    o.write_back();
  });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::reduce_scatter_tensor_coalesced(
    std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs, const c10d::ReduceScatterOptions& opts) {
  TORCH_CHECK_VALUE(outputs.size() == inputs.size(), "npusim: reduce_scatter_tensor_coalesced needs one output per input");
  auto factor = premul_factor(opts.reduceOp);
  std::vector<OpDesc> ops;
  std::vector<Staged> ins, outs;
  for (size_t k = 0; k < inputs.size(); ++k) {
    check_tensor(inputs[k], "reduce_scatter_tensor_coalesced");
    check_tensor(outputs[k], "reduce_scatter_tensor_coalesced");
    TORCH_CHECK_VALUE(outputs[k].scalar_type() == inputs[k].scalar_type() && inputs[k].numel() == outputs[k].numel() * size_,
                      "npusim: reduce_scatter_tensor_coalesced: input ", k, " must have the output's dtype and ",
                      size_, "x its elements");
    check_reduce(outputs[k], opts.reduceOp, "reduce_scatter_tensor_coalesced");
    ops.push_back(next_op(OpKind::ReduceScatter, outputs[k], wire_numel(outputs[k]), opts.reduceOp.op_));
    ins.push_back(stage(inputs[k], true, factor));
    outs.push_back(stage(outputs[k], false));
  }
  return enqueue(c10d::OpType::COALESCED, outputs, opts.timeout, [this, ins, outs, ops](Clock::time_point deadline) {
    for (size_t k = 0; k < ins.size(); ++k) {
      CollectiveContext c{*comm_, ops[k], wire_dtype(outs[k].flat), deadline};
      Span in = ins[k].span();
      dist::reduce_scatter(c, dist::split(in.data, in.numel, c.esize(), size_), outs[k].span());
      outs[k].write_back();
    }
  });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::alltoall_base(at::Tensor& output, at::Tensor& input,
                                                                 std::vector<int64_t>& output_splits,
                                                                 std::vector<int64_t>& input_splits,
                                                                 const c10d::AllToAllOptions& opts) {
  std::vector<at::Tensor> both{input, output};
  check_one_device({&both}, "all_to_all_single");
  check_tensor(input, "all_to_all_single");
  check_tensor(output, "all_to_all_single");
  TORCH_CHECK_VALUE(output.scalar_type() == input.scalar_type(), "npusim: all_to_all_single: output dtype ",
                    output.scalar_type(), " differs from input dtype ", input.scalar_type());
  auto row_splits = [&](const at::Tensor& t, const std::vector<int64_t>& splits, const char* what) {
    TORCH_CHECK_VALUE(t.dim() >= 1, "npusim: all_to_all_single needs tensors with at least one dimension");
    std::vector<int64_t> rows = splits;
    if (rows.empty()) {
      TORCH_CHECK_VALUE(t.size(0) % size_ == 0, "npusim: all_to_all_single: ", what, " dim 0 (", t.size(0),
                        ") is not divisible by the group size ", size_, "; pass split sizes");
      rows.assign(size_, t.size(0) / size_);
    }
    TORCH_CHECK_VALUE(static_cast<int>(rows.size()) == size_, "npusim: all_to_all_single: ", what, " split sizes has ",
                      rows.size(), " entries for a group of ", size_);
    int64_t total = 0;
    for (int64_t r : rows) {
      TORCH_CHECK_VALUE(r >= 0, "npusim: all_to_all_single: negative split size");
      total += r;
    }
    TORCH_CHECK_VALUE(total == t.size(0), "npusim: all_to_all_single: ", what, " split sizes sum to ", total,
                      " but dim 0 is ", t.size(0));
    return rows;
  };
  std::vector<int64_t> in_rows = row_splits(input, input_splits, "input");
  std::vector<int64_t> out_rows = row_splits(output, output_splits, "output");
  int64_t in_row = input.size(0) ? input.numel() / input.size(0) : 0;
  int64_t out_row = output.size(0) ? output.numel() / output.size(0) : 0;
  OpDesc op = next_op(OpKind::AllToAll, input, 0);
  Staged i = stage(input, true);
  Staged o = stage(output, false);
  return enqueue(c10d::OpType::ALLTOALL_BASE, {output}, opts.timeout,
                 [this, i, o, op, in_rows, out_rows, in_row, out_row](Clock::time_point deadline) {
                   CollectiveContext c{*comm_, op, wire_dtype(o.flat), deadline};
                   size_t scale = i.flat.is_complex() ? 2 : 1;
                   auto cut = [&](const Staged& s, const std::vector<int64_t>& rows, int64_t row) {
                     std::vector<Span> out;
                     char* p = static_cast<char*>(s.span().data);
                     for (int64_t r : rows) {
                       size_t n = static_cast<size_t>(r * row) * scale;
                       out.push_back({p, n});
                       p += n * c.esize();
                     }
                     return out;
                   };
                   dist::all_to_all(c, cut(i, in_rows, in_row), cut(o, out_rows, out_row));
                   o.write_back();
                 });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::alltoall(std::vector<at::Tensor>& outputs,
                                                            std::vector<at::Tensor>& inputs,
                                                            const c10d::AllToAllOptions& opts) {
  check_one_device({&inputs, &outputs}, "all_to_all");
  TORCH_CHECK_VALUE(static_cast<int>(inputs.size()) == size_ && static_cast<int>(outputs.size()) == size_,
                    "npusim: all_to_all needs ", size_, " input and output tensors, got ", inputs.size(), " and ",
                    outputs.size());
  for (size_t k = 0; k < inputs.size(); ++k) {
    check_tensor(inputs[k], "all_to_all");
    check_tensor(outputs[k], "all_to_all");
    TORCH_CHECK_VALUE(inputs[k].scalar_type() == inputs[0].scalar_type() && outputs[k].scalar_type() == inputs[0].scalar_type(),
                      "npusim: all_to_all needs tensors of one dtype");
  }
  OpDesc op = next_op(OpKind::AllToAll, inputs[0], 0);
  std::vector<Staged> ins = stage_all(inputs, true), outs = stage_all(outputs, false);
  return enqueue(c10d::OpType::ALLTOALL, outputs, opts.timeout, [this, ins, outs, op](Clock::time_point deadline) {
    CollectiveContext c{*comm_, op, wire_dtype(ins[0].flat), deadline};
    dist::all_to_all(c, spans(ins), spans(outs));
    write_back_all(outs);
  });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::barrier(const c10d::BarrierOptions& opts) {
  OpDesc op = next_op(OpKind::Barrier, at::Tensor(), 0);
  return enqueue(c10d::OpType::BARRIER, {}, opts.timeout, [this, op](Clock::time_point deadline) {
    CollectiveContext c{*comm_, op, c10::ScalarType::Byte, deadline};
    dist::barrier(c);
  });
}

void ProcessGroupNpuSim::monitoredBarrier(const c10d::BarrierOptions& opts, bool /*wait_all_ranks*/) {
  // Every rank waits for every other, so each one names the ranks that did not arrive.
  barrier(opts)->wait();
}

// ---------------------------------------------------------------- point-to-point

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::enqueue_p2p(c10d::OpType type, at::Tensor tensor, int peer,
                                                               int tag, bool is_send) {
  check_tensor(tensor, is_send ? "send" : "recv");
  TORCH_CHECK_VALUE(peer >= 0 && peer < size_, "npusim: ", is_send ? "send to" : "recv from", " rank ", peer,
                    " is out of range for a group of ", size_);
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

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::recvAnysource(std::vector<at::Tensor>&, int) {
  TORCH_CHECK_VALUE(false, "npusim: recv from any source is not supported; pass src= (streams are per pair of ranks)");
}

}  // namespace torch_npu_sim::dist
