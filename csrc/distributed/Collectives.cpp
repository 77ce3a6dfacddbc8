// The c10d collectives of ProcessGroupNpuSim: each validates its arguments on the
// caller's thread, stages its tensors, takes the next operation descriptor and queues
// the algorithm (algorithms/) for the progress thread. Under graph capture each first
// hands the call itself to the graph (record_for_replay), which issues it on every replay.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "distributed/ArgumentChecks.h"
#include "distributed/ProcessGroupNpuSim.h"
#include "distributed/Staging.h"
#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {

// The first statement of each collective: while the current stream captures, the call
// (its arguments copied) is what the graph records.
namespace {
std::vector<at::Tensor> joined(const std::vector<std::vector<at::Tensor>>& lists) {
  std::vector<at::Tensor> out;
  for (const auto& list : lists) out.insert(out.end(), list.begin(), list.end());
  return out;
}
}  // namespace

#define NPUSIM_RECORD_WHEN_CAPTURING(type, outputs, call) \
  if (capturing()) return record_for_replay(type, outputs, [=, this]() mutable { return call; })

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::broadcast(std::vector<at::Tensor>& tensors,
                                                             const c10d::BroadcastOptions& opts) {
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::BROADCAST, tensors, broadcast(tensors, opts));
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
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::ALLREDUCE, tensors, allreduce(tensors, opts));
  if (tensors.size() == 1 && tensors[0].defined() && tensors[0].is_sparse()) return allreduce_sparse(tensors[0], opts);
  const at::Tensor& t = single(tensors, "all_reduce");
  TORCH_CHECK_VALUE(!opts.sparseIndices.has_value(), "npusim: all_reduce with sparse indices is not supported");
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
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::ALLREDUCE_COALESCED, tensors, allreduce_coalesced(tensors, opts));
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
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::REDUCE, tensors, reduce(tensors, opts));
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
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::ALLGATHER, joined(outputs), allgather(outputs, inputs, opts));
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
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::_ALLGATHER_BASE, std::vector<at::Tensor>{output},
                               _allgather_base(output, input, opts));
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

// outputs[r][i] receives input i of rank r (c10d's and gloo's layout).
c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::allgather_coalesced(std::vector<std::vector<at::Tensor>>& outputs,
                                                                       std::vector<at::Tensor>& inputs,
                                                                       const c10d::AllgatherOptions& opts) {
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::ALLGATHER_COALESCED, joined(outputs),
                               allgather_coalesced(outputs, inputs, opts));
  TORCH_CHECK_VALUE(static_cast<int>(outputs.size()) == size_, "npusim: all_gather_coalesced needs ", size_,
                    " output lists (one per rank), got ", outputs.size());
  std::vector<OpDesc> ops;
  std::vector<Staged> ins;
  std::vector<std::vector<Staged>> outs(inputs.size());  // [input][rank]
  std::vector<at::Tensor> all_outputs;
  for (size_t r = 0; r < outputs.size(); ++r) {
    TORCH_CHECK_VALUE(outputs[r].size() == inputs.size(), "npusim: all_gather_coalesced: output list ", r, " has ",
                      outputs[r].size(), " tensors but there are ", inputs.size(), " inputs");
    check_one_device({&inputs, &outputs[r]}, "all_gather_coalesced");
    all_outputs.insert(all_outputs.end(), outputs[r].begin(), outputs[r].end());
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    check_tensor(inputs[i], "all_gather_coalesced");
    for (size_t r = 0; r < outputs.size(); ++r) check_like(outputs[r][i], inputs[i], "all_gather_coalesced", "output tensor");
  }
  // operation numbers are taken only once every argument is valid (peers count them too)
  for (size_t i = 0; i < inputs.size(); ++i) {
    for (size_t r = 0; r < outputs.size(); ++r) outs[i].push_back(stage(outputs[r][i], false));
    ops.push_back(next_op(OpKind::AllGather, inputs[i], wire_numel(inputs[i])));
    ins.push_back(stage(inputs[i], true));
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
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::COALESCED, outputs,
                               allgather_into_tensor_coalesced(outputs, inputs, opts));
  TORCH_CHECK_VALUE(outputs.size() == inputs.size(), "npusim: all_gather_into_tensor_coalesced needs one output per input");
  std::vector<OpDesc> ops;
  std::vector<Staged> ins, outs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    check_tensor(inputs[i], "all_gather_into_tensor_coalesced");
    check_tensor(outputs[i], "all_gather_into_tensor_coalesced");
    TORCH_CHECK_VALUE(outputs[i].scalar_type() == inputs[i].scalar_type() && outputs[i].numel() == inputs[i].numel() * size_,
                      "npusim: all_gather_into_tensor_coalesced: output ", i, " must have the input's dtype and ",
                      size_, "x its elements");
  }
  for (size_t i = 0; i < inputs.size(); ++i) {  // numbered once all are valid
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
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::GATHER, joined(outputs), gather(outputs, inputs, opts));
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
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::SCATTER, outputs, scatter(outputs, inputs, opts));
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
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::REDUCE_SCATTER, outputs, reduce_scatter(outputs, inputs, opts));
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
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::_REDUCE_SCATTER_BASE, std::vector<at::Tensor>{output},
                               _reduce_scatter_base(output, input, opts));
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
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::COALESCED, outputs,
                               reduce_scatter_tensor_coalesced(outputs, inputs, opts));
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
  }
  for (size_t k = 0; k < inputs.size(); ++k) {  // numbered once all are valid
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
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::ALLTOALL_BASE, std::vector<at::Tensor>{output},
                               alltoall_base(output, input, output_splits, input_splits, opts));
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
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::ALLTOALL, outputs, alltoall(outputs, inputs, opts));
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
  NPUSIM_RECORD_WHEN_CAPTURING(c10d::OpType::BARRIER, std::vector<at::Tensor>{}, barrier(opts));
  OpDesc op = next_op(OpKind::Barrier, at::Tensor(), 0);
  return enqueue(c10d::OpType::BARRIER, {}, opts.timeout, [this, op](Clock::time_point deadline) {
    CollectiveContext c{*comm_, op, c10::ScalarType::Byte, deadline};
    dist::barrier(c);
  });
}

}  // namespace torch_npu_sim::dist
