#include "distributed/ArgumentChecks.h"

#include <c10/util/Exception.h>

#include "distributed/Reduction.h"
#include "distributed/Staging.h"

namespace torch_npu_sim::dist {

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

}  // namespace torch_npu_sim::dist
