// all_reduce of a sparse COO tensor (SUM, as gloo): every rank's coalesced indices and
// values are gathered (padded to the largest count), summed into one coalesced tensor,
// and written back into the caller's tensor. Three operations on the wire: the counts,
// then the indices, then the values; the last two take their size from the first.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "distributed/ArgumentChecks.h"
#include "distributed/ProcessGroupNpuSim.h"
#include "distributed/Staging.h"
#include "distributed/algorithms/Algorithms.h"

namespace torch_npu_sim::dist {

c10::intrusive_ptr<c10d::Work> ProcessGroupNpuSim::allreduce_sparse(at::Tensor& tensor, const c10d::AllreduceOptions& opts) {
  TORCH_CHECK_VALUE(tensor.layout() == at::kSparse, "npusim: sparse all_reduce supports sparse COO tensors only, got ",
                    tensor.layout());
  TORCH_CHECK_VALUE(opts.reduceOp.op_ == c10d::ReduceOp::SUM, "npusim: sparse all_reduce supports SUM only");
  TORCH_CHECK_VALUE(tensor.device().is_cpu(), "npusim: sparse all_reduce takes CPU tensors, got ", tensor.device());
  at::Tensor input = tensor.coalesce();
  check_reduce(input._values(), opts.reduceOp, "all_reduce");
  OpDesc counts_op = next_op(OpKind::AllGather, at::empty({0}, at::kLong), 1);
  OpDesc indices_op = next_op(OpKind::AllGather, at::empty({0}, at::kLong), 0);
  OpDesc values_op = next_op(OpKind::AllGather, input._values(), 0);
  std::vector<at::Tensor> outputs{tensor};
  return enqueue(c10d::OpType::ALLREDUCE, outputs, opts.timeout,
                 [this, tensor, input, counts_op, indices_op, values_op](Clock::time_point deadline) mutable {
                   at::Tensor indices = input._indices().contiguous(), values = input._values().contiguous();
                   int64_t nnz = input._nnz(), sparse_dim = indices.size(0);
                   // 1. how many entries each rank has
                   at::Tensor mine = at::full({1}, nnz, at::kLong);
                   at::Tensor counts = at::empty({size_}, at::kLong);
                   {
                     CollectiveContext c{*comm_, counts_op, at::kLong, deadline};
                     dist::all_gather(c, {mine.data_ptr(), 1}, dist::split(counts.data_ptr(), size_, c.esize(), size_));
                   }
                   int64_t most = counts.max().item<int64_t>();
                   // 2. indices and 3. values, padded to the largest count
                   at::Tensor my_indices = at::zeros({sparse_dim, most}, at::kLong);
                   my_indices.narrow(1, 0, nnz).copy_(indices);
                   std::vector<int64_t> value_shape = values.sizes().vec();
                   value_shape[0] = most;
                   at::Tensor my_values = at::zeros(value_shape, values.options());
                   my_values.narrow(0, 0, nnz).copy_(values);
                   at::Tensor all_indices = at::empty({size_, sparse_dim, most}, at::kLong);
                   value_shape.insert(value_shape.begin(), size_);
                   at::Tensor all_values = at::empty(value_shape, values.options());
                   indices_op.numel = static_cast<uint64_t>(sparse_dim * most);
                   values_op.numel = wire_numel(my_values);
                   {
                     CollectiveContext c{*comm_, indices_op, at::kLong, deadline};
                     Span out{all_indices.data_ptr(), static_cast<size_t>(all_indices.numel())};
                     dist::all_gather(c, {my_indices.data_ptr(), static_cast<size_t>(my_indices.numel())},
                                      dist::split(out.data, out.numel, c.esize(), size_));
                   }
                   {
                     Staged in{my_values, my_values}, out{all_values, all_values};
                     CollectiveContext c{*comm_, values_op, wire_dtype(my_values), deadline};
                     Span o = out.span();
                     dist::all_gather(c, in.span(), dist::split(o.data, o.numel, c.esize(), size_));
                   }
                   std::vector<at::Tensor> index_parts, value_parts;
                   for (int r = 0; r < size_; ++r) {
                     int64_t n = counts[r].item<int64_t>();
                     index_parts.push_back(all_indices[r].narrow(1, 0, n));
                     value_parts.push_back(all_values[r].narrow(0, 0, n));
                   }
                   at::Tensor sum = at::sparse_coo_tensor(at::cat(index_parts, 1), at::cat(value_parts, 0),
                                                          tensor.sizes(), values.options().layout(at::kSparse))
                                        .coalesce();
                   tensor.copy_(sum);
                 });
}

}  // namespace torch_npu_sim::dist
