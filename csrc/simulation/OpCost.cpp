#include "simulation/OpCost.h"

#include <algorithm>

namespace torch_npu_sim::simulation {
namespace {

const at::Tensor* tensor_at(c10::ArrayRef<c10::IValue> args, size_t i) {
  return i < args.size() && args[i].isTensor() ? &args[i].toTensor() : nullptr;
}

// 2 m k n for [.., m, k] @ [.., k, n] with `batch` products
double matmul_flops(const at::Tensor* a, const at::Tensor* b) {
  if (!a || !b || a->dim() < 2 || b->dim() < 2) return -1;
  double batch = 1;
  for (int64_t i = 0; i < a->dim() - 2; ++i) batch *= static_cast<double>(a->size(i));
  return 2.0 * batch * a->size(-2) * a->size(-1) * b->size(-1);
}

// flop_counter's sdpa_flop_count: q [b, h, s, d], k [b, h, t, d], v [b, h, t, dv]
double attention_flops(const at::Tensor* q, const at::Tensor* k, const at::Tensor* v, bool backward) {
  if (!q || !k || !v || q->dim() != 4 || k->dim() != 4 || v->dim() != 4) return -1;
  double bh = static_cast<double>(q->size(0)) * q->size(1);
  double s = q->size(2), d = q->size(3), t = k->size(2), dv = v->size(3);
  // forward: q k^T, then p v; backward (sdpa_backward_flop_count): the scores recomputed, then
  // grad_out v^T, p^T grad_out, grad_scores k and q^T grad_scores
  return backward ? 2 * bh * s * t * (3 * d + 2 * dv) : 2 * bh * s * t * (d + dv);
}

// A causal attention kernel skips the masked-out blocks: the share of the [s, t] scores it
// computes under torch's top-left aligned causal mask (row i keeps min(i + 1, t) columns).
// flop_counter (and MFU formulas) count the full square; time follows the work done.
double causal_fraction(const c10::FunctionSchema& schema, c10::ArrayRef<c10::IValue> args) {
  if (op_class_of(schema.name()) != npusimOpClassAttention) return 1.0;
  auto index = schema.argumentIndexWithName("is_causal");
  if (!index || *index >= args.size() || !args[*index].isBool() || !args[*index].toBool()) return 1.0;
  bool backward = schema.name().find("backward") != std::string::npos;
  const at::Tensor* q = tensor_at(args, backward ? 1 : 0);
  const at::Tensor* k = tensor_at(args, backward ? 2 : 1);
  if (!q || !k || q->dim() != 4 || k->dim() != 4) return 1.0;
  double s = q->size(2), t = k->size(2);
  if (s <= 0 || t <= 0) return 1.0;
  double full_rows = std::max(0.0, s - t);  // rows i >= t keep all t columns
  double partial = std::min(s, t);          // rows i < t keep i + 1 columns
  return (partial * (partial + 1) / 2 + full_rows * t) / (s * t);
}

}  // namespace

// flop_counter's conv_flop_count: 2 * batch * prod(spatial) * c_out * c_in/groups * prod(kernel),
// spatial being the output's (the input's for a transposed convolution)
double convolution_flops(c10::IntArrayRef x, c10::IntArrayRef w, c10::IntArrayRef out, bool transposed) {
  if (x.size() < 3 || w.size() != x.size() || out.size() != x.size()) return -1;
  double flops = 2.0 * x[0] * w[0] * w[1];
  for (size_t i = 2; i < w.size(); ++i) flops *= static_cast<double>(w[i]);
  c10::IntArrayRef spatial = transposed ? x : out;
  for (size_t i = 2; i < spatial.size(); ++i) flops *= static_cast<double>(spatial[i]);
  return flops;
}

namespace {

}  // namespace

double tensor_bytes(std::initializer_list<const at::Tensor*> tensors) {
  double bytes = 0;
  for (const at::Tensor* t : tensors)
    if (t->defined()) bytes += static_cast<double>(t->numel()) * static_cast<double>(t->element_size());
  return bytes;
}

int compute_class_of(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::ScalarType::BFloat16:
    case c10::ScalarType::Half: return 1;
    case c10::ScalarType::Char:
    case c10::ScalarType::Byte: return 2;
    default: return 0;
  }
}

int op_class_of(const std::string& name) {
  static const char* const kMatmuls[] = {
      "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm", "aten::_int_mm", "aten::_scaled_mm",
      "aten::_addmm_activation", "aten::linear", "aten::matmul", "aten::convolution", "aten::_convolution",
      "aten::convolution_backward", "aten::_convolution_double_backward", "aten::convolution_overrideable",
      "aten::convolution_backward_overrideable"};
  for (const char* m : kMatmuls)
    if (name == m) return npusimOpClassMatmul;
  // _scaled_dot_product_{flash,efficient,cudnn,...}_attention[_for_cpu][_backward],
  // _scaled_dot_product_fused_attention_overrideable[_backward], _flash/_efficient_attention_*
  auto starts = [&](const char* prefix) { return name.rfind(prefix, 0) == 0; };
  if ((starts("aten::_scaled_dot_product_") && name.find("attention") != std::string::npos &&
       name.find("_math") == std::string::npos) ||
      starts("aten::_flash_attention_") || starts("aten::_efficient_attention_"))
    return npusimOpClassAttention;
  return npusimOpClassOther;
}

double formula_flops(const std::string& name, c10::ArrayRef<c10::IValue> args) {
  if (name == "aten::mm" || name == "aten::bmm" || name == "aten::_int_mm") return matmul_flops(tensor_at(args, 0), tensor_at(args, 1));
  if (name == "aten::addmm" || name == "aten::baddbmm" || name == "aten::addbmm")
    return matmul_flops(tensor_at(args, 1), tensor_at(args, 2));
  if (name == "aten::_scaled_dot_product_flash_attention_for_cpu" ||
      name == "aten::_scaled_dot_product_efficient_attention" ||
      name == "aten::_scaled_dot_product_flash_attention" ||
      name == "aten::_scaled_dot_product_fused_attention_overrideable")
    return attention_flops(tensor_at(args, 0), tensor_at(args, 1), tensor_at(args, 2), false);
  if (name == "aten::_scaled_dot_product_flash_attention_for_cpu_backward" ||
      name == "aten::_scaled_dot_product_efficient_attention_backward" ||
      name == "aten::_scaled_dot_product_flash_attention_backward")
    return attention_flops(tensor_at(args, 1), tensor_at(args, 2), tensor_at(args, 3), true);
  return -1;
}

npusimKernelCost pointwise_cost(const char* name, const at::Tensor& a, const at::Tensor& b, const at::Tensor& out) {
  auto device_bytes = [](const at::Tensor& t) {
    return t.defined() && t.device().type() == c10::DeviceType::PrivateUse1
               ? static_cast<double>(t.numel()) * static_cast<double>(t.element_size())
               : 0.0;
  };
  npusimKernelCost cost{};
  cost.name = name;
  cost.flops = out.defined() ? static_cast<double>(out.numel()) : 0;
  // the result is always device memory (a native kernel may hand over its CPU alias)
  double out_bytes = out.defined() ? static_cast<double>(out.numel()) * static_cast<double>(out.element_size()) : 0.0;
  cost.bytes = device_bytes(a) + device_bytes(b) + out_bytes;
  cost.compute_class = compute_class_of(out.defined() ? out.scalar_type() : a.scalar_type());
  return cost;
}

OpCost::OpCost(const c10::FunctionSchema& schema, c10::ArrayRef<c10::IValue> args) {
  cost_.name = schema.name().c_str();  // lives as long as the registered operator
  cost_.compute_class = -1;
  cost_.op_class = op_class_of(schema.name());
  for (const c10::IValue& v : args) {
    if (v.isTensor()) add_tensor(v.toTensor(), false);
    else if (v.isTensorList())
      for (const at::Tensor& t : v.toTensorList()) add_tensor(t, false);
  }
  double flops = formula_flops(schema.name(), args);
  if (flops >= 0) {
    cost_.flops = flops * causal_fraction(schema, args);
    formula_ = true;
  }
  // a convolution's FLOPs need its output's size: kept for add_results
  const auto& name = schema.name();
  if ((name == "aten::convolution" || name == "aten::_convolution") && tensor_at(args, 0) && tensor_at(args, 1)) {
    conv_input_ = tensor_at(args, 0)->sizes().vec();
    conv_weight_ = tensor_at(args, 1)->sizes().vec();
    conv_transposed_ = args.size() > 6 && args[6].isBool() && args[6].toBool();
  }
}

void OpCost::add_tensor(const at::Tensor& t, bool is_result) {
  if (!t.defined()) return;
  double numel = static_cast<double>(t.numel());
  cost_.bytes += numel * static_cast<double>(t.element_size());
  max_numel_ = std::max(max_numel_, numel);
  // the first operand's dtype decides (the first result's when there is no tensor input)
  if (cost_.compute_class < 0) cost_.compute_class = compute_class_of(t.scalar_type());
}

void OpCost::add_results(c10::ArrayRef<c10::IValue> results) {
  for (const c10::IValue& v : results) {
    if (v.isTensor()) add_tensor(v.toTensor(), true);
    else if (v.isTensorList())
      for (const at::Tensor& t : v.toTensorList()) add_tensor(t, true);
  }
  if (!conv_input_.empty() && !results.empty() && results[0].isTensor()) {
    double flops = convolution_flops(conv_input_, conv_weight_, results[0].toTensor().sizes(), conv_transposed_);
    if (flops >= 0) {
      cost_.flops = flops;
      formula_ = true;
    }
  }
  if (!formula_) cost_.flops = max_numel_;  // one operation per element
  if (cost_.compute_class < 0) cost_.compute_class = 0;
}

}  // namespace torch_npu_sim::simulation
