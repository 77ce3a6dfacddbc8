// Unboxed kernels for the arithmetic ops that dominate small-op latency (add, sub, mul,
// div and their in-place forms). Same zero-copy scheme as the fallback, minus boxing:
// the CPU kernel runs on CPU aliases, results are npusim allocations adopted as is.
#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include "aten/CpuAlias.h"
#include "core/Allocator.h"
#include "core/Runtime.h"

namespace torch_npu_sim {
namespace {

constexpr auto kNpu = c10::DeviceType::PrivateUse1;

// The npusim device of a binary op, with CUDA's rules: a 0-dim CPU tensor is a scalar
// and mixes with anything; any other mixture is an error naming both devices.
c10::DeviceIndex device_of(const at::Tensor& a, const at::Tensor& b, const char* op) {
  const at::Tensor& npu = a.device().type() == kNpu ? a : b;
  const at::Tensor& other = a.device().type() == kNpu ? b : a;
  auto od = other.device();
  bool ok = (od.type() == kNpu && od.index() == npu.device().index()) || (od.is_cpu() && other.dim() == 0);
  TORCH_CHECK(ok, "Expected all tensors to be on the same device, but found at least two devices, ", npu.device(),
              " and ", od, "! (when checking arguments for ", op, ")");
  return npu.device().index();
}

at::Tensor view_for_cpu(const at::Tensor& t) { return t.device().type() == kNpu ? cpu_alias(t) : t; }

template <typename Fn>
at::Tensor run_functional(c10::DeviceIndex device, Fn&& fn) {
  c10::OptionalDeviceGuard guard;
  if (current_device() != device) guard.reset_device(c10::Device(kNpu, device));
  at::Tensor out;
  {
    AllocateOnNpuSim here(device);
    launch_on_stream(device, [&] { out = fn(); });
  }
  return adopt_as_npusim(out, device);
}

template <typename Fn>
at::Tensor& run_inplace(at::Tensor& self, c10::DeviceIndex device, Fn&& fn) {
  TORCH_CHECK(self.device().type() == kNpu, "npusim: in-place result must be an npusim tensor, got ", self.device());
  c10::OptionalDeviceGuard guard;
  if (current_device() != device) guard.reset_device(c10::Device(kNpu, device));
  at::Tensor alias = cpu_alias(self);
  launch_on_stream(device, [&] { fn(alias); });
  TORCH_INTERNAL_ASSERT(alias.sizes() == self.sizes(), "npusim: an in-place op changed its argument's shape");
  return self;
}

at::Tensor add(const at::Tensor& a, const at::Tensor& b, const at::Scalar& alpha) {
  auto d = device_of(a, b, "aten::add.Tensor");
  return run_functional(d, [&] { return at::add(view_for_cpu(a), view_for_cpu(b), alpha); });
}
at::Tensor sub(const at::Tensor& a, const at::Tensor& b, const at::Scalar& alpha) {
  auto d = device_of(a, b, "aten::sub.Tensor");
  return run_functional(d, [&] { return at::sub(view_for_cpu(a), view_for_cpu(b), alpha); });
}
at::Tensor mul(const at::Tensor& a, const at::Tensor& b) {
  auto d = device_of(a, b, "aten::mul.Tensor");
  return run_functional(d, [&] { return at::mul(view_for_cpu(a), view_for_cpu(b)); });
}
at::Tensor div(const at::Tensor& a, const at::Tensor& b) {
  auto d = device_of(a, b, "aten::div.Tensor");
  return run_functional(d, [&] { return at::div(view_for_cpu(a), view_for_cpu(b)); });
}
at::Tensor& add_(at::Tensor& a, const at::Tensor& b, const at::Scalar& alpha) {
  auto d = device_of(a, b, "aten::add_.Tensor");
  return run_inplace(a, d, [&](at::Tensor& x) { x.add_(view_for_cpu(b), alpha); });
}
at::Tensor& sub_(at::Tensor& a, const at::Tensor& b, const at::Scalar& alpha) {
  auto d = device_of(a, b, "aten::sub_.Tensor");
  return run_inplace(a, d, [&](at::Tensor& x) { x.sub_(view_for_cpu(b), alpha); });
}
at::Tensor& mul_(at::Tensor& a, const at::Tensor& b) {
  auto d = device_of(a, b, "aten::mul_.Tensor");
  return run_inplace(a, d, [&](at::Tensor& x) { x.mul_(view_for_cpu(b)); });
}
at::Tensor& div_(at::Tensor& a, const at::Tensor& b) {
  auto d = device_of(a, b, "aten::div_.Tensor");
  return run_inplace(a, d, [&](at::Tensor& x) { x.div_(view_for_cpu(b)); });
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("add.Tensor", TORCH_FN(add));
  m.impl("sub.Tensor", TORCH_FN(sub));
  m.impl("mul.Tensor", TORCH_FN(mul));
  m.impl("div.Tensor", TORCH_FN(div));
  m.impl("add_.Tensor", TORCH_FN(add_));
  m.impl("sub_.Tensor", TORCH_FN(sub_));
  m.impl("mul_.Tensor", TORCH_FN(mul_));
  m.impl("div_.Tensor", TORCH_FN(div_));
}

}  // namespace torch_npu_sim
