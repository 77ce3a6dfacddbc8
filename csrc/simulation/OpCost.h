// The cost of one ATen op for the simulated clock: FLOPs from per-op formulas (those of
// torch.utils.flop_counter for matmuls and attention; element count otherwise) and bytes of
// device memory read and written (the sizes of tensor arguments and results).
#pragma once

#include <ATen/core/function_schema.h>
#include <ATen/core/ivalue.h>
#include <c10/util/ArrayRef.h>

#include <string>
#include <vector>

#include "npusim_runtime.h"

namespace torch_npu_sim::simulation {

class OpCost {
 public:
  // from the op and its arguments, before it runs (`args` still hold npusim tensors)
  OpCost(const c10::FunctionSchema& schema, c10::ArrayRef<c10::IValue> args);
  // adds the results, once known
  void add_results(c10::ArrayRef<c10::IValue> results);
  const npusimKernelCost* get() const { return &cost_; }

 private:
  void add_tensor(const at::Tensor& t, bool is_result);
  npusimKernelCost cost_{};
  bool formula_ = false;    // FLOPs came from a formula; else the largest element count
  double max_numel_ = 0;
  std::vector<int64_t> conv_input_, conv_weight_;
  bool conv_transposed_ = false;
};

// The compute class of a dtype: 1 bf16/fp16, 2 int8/uint8, 0 otherwise (fp32, fp64, ...).
int compute_class_of(c10::ScalarType dtype);

// The op class of an ATen op by name (npusimOpClass*): matmuls (mm, addmm, bmm, baddbmm,
// addbmm, _int_mm, _scaled_mm, _addmm_activation, linear, matmul, convolutions and their
// backward) 1, fused scaled-dot-product attention and its backward 2, everything else 0.
int op_class_of(const std::string& name);

// FLOPs of an op with a formula from its arguments alone (mm, addmm, bmm, baddbmm,
// scaled-dot-product attention and its backward); negative when the op has none.
double formula_flops(const std::string& name, c10::ArrayRef<c10::IValue> args);
// A binary pointwise op: one operation per result element; operands read and result written once
// (`b` counts only when it is on the device: a CPU scalar is an argument, not memory traffic).
npusimKernelCost pointwise_cost(const char* name, const at::Tensor& a, const at::Tensor& b, const at::Tensor& out);

// A native kernel's cost, filled in by the kernel once its results exist (the runtime reads
// the cost after the kernel ran); nothing is computed while simulation does not want costs.
struct LaunchCost {
  explicit LaunchCost(const char* name) : wanted(npusimCostModelEnabled() != 0) {
    cost.name = name;
    if (wanted) cost.op_class = op_class_of(name);
  }
  const npusimKernelCost* get() const { return wanted ? &cost : nullptr; }
  void set(double flops, double bytes, c10::ScalarType dtype) {
    cost.flops = flops < 0 ? 0 : flops;
    cost.bytes = bytes;
    cost.compute_class = compute_class_of(dtype);
  }
  bool wanted;
  npusimKernelCost cost{};
};

// bytes of the defined tensors' elements
double tensor_bytes(std::initializer_list<const at::Tensor*> tensors);

// a convolution's FLOPs from the input, weight and output sizes
double convolution_flops(c10::IntArrayRef x, c10::IntArrayRef w, c10::IntArrayRef out, bool transposed);

}  // namespace torch_npu_sim::simulation
