// Unboxed kernels for the arithmetic ops that dominate small-op latency (add, sub, mul,
// div and their in-place forms).
//
// Fast path: two npusim operands of one floating dtype. A TensorIterator over the npusim
// tensors themselves runs the CPU kernel stub (add_stub, mul_stub, div_true_stub) on their
// bytes (host memory); the result is allocated by the iterator on the npusim device.
// Other cases use the fallback's zero-copy scheme minus boxing: the CPU kernel runs on CPU
// aliases (called through at::cpu::, so the dispatcher and autograd are not crossed a
// second time) and its result, an npusim allocation, is adopted as is.
//
// A stub's entry point (DispatchStubImpl::get_call_ptr) is declared according to the CPU
// kernel variants libtorch was built with; the x86-64 wheels carry AVX2 and AVX-512
// variants, so say so here, or the module would not load (undefined symbol). On other
// architectures the fast path is compiled out.
#if defined(__x86_64__)
#define NPUSIM_CPU_STUBS 1
#ifndef HAVE_AVX2_CPU_DEFINITION
#define HAVE_AVX2_CPU_DEFINITION
#endif
#ifndef HAVE_AVX512_CPU_DEFINITION
#define HAVE_AVX512_CPU_DEFINITION
#endif
#else
#define NPUSIM_CPU_STUBS 0
#endif
#include <ATen/ATen.h>
#include <ATen/ExpandUtils.h>
#include <ATen/TensorIterator.h>
#include <ATen/native/BinaryOps.h>
#include <ATen/ops/div_cpu_dispatch.h>
#include <ATen/ops/mul_cpu_dispatch.h>
#include <ATen/ops/sub_cpu_dispatch.h>
#include <ATen/ops/add_cpu_dispatch.h>
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

// The common case (two npusim tensors of one floating dtype on one device) skips the
// aliasing altogether: a TensorIterator over the npusim tensors themselves (their bytes
// are host memory) runs the CPU's kernel stub, and allocates the result through the
// npusim allocator. Mixed dtypes, CPU scalars and integers take the aliasing path below,
// where the CPU's TensorIterator does its CPU-only input casts.
bool fast_operands(const at::Tensor& a, const at::Tensor& b) {
  return a.device().type() == kNpu && b.device() == a.device() && a.scalar_type() == b.scalar_type() &&
         at::isFloatingType(a.scalar_type()) && a.layout() == c10::kStrided && b.layout() == c10::kStrided &&
         !a.is_neg() && !b.is_neg();
}

template <typename Stub>
at::Tensor fast_functional(const at::Tensor& a, const at::Tensor& b, Stub&& stub) {
  at::Tensor out;
  auto iter = at::TensorIterator::borrowing_binary_op(out, a, b);
  launch_on_stream(a.device().index(), [&] { stub(iter); });
  return iter.output();
}

// in-place: only when `b` broadcasts to `a`'s shape (otherwise the aliasing path raises
// the CPU's error)
bool fast_inplace_operands(const at::Tensor& a, const at::Tensor& b) {
  return fast_operands(a, b) && (a.sizes() == b.sizes() ||
                                 (b.dim() <= a.dim() && at::infer_size_dimvector(a.sizes(), b.sizes()) == a.sizes()));
}

template <typename Stub>
at::Tensor& fast_inplace(at::Tensor& a, const at::Tensor& b, Stub&& stub) {
  auto iter = at::TensorIterator::borrowing_binary_op(a, a, b);
  launch_on_stream(a.device().index(), [&] { stub(iter); });
  return a;
}

at::Tensor add(const at::Tensor& a, const at::Tensor& b, const at::Scalar& alpha) {
#if NPUSIM_CPU_STUBS
  if (fast_operands(a, b)) {
    return fast_functional(a, b, [&](at::TensorIteratorBase& iter) { at::native::alpha_check(iter.common_dtype(), alpha); at::native::add_stub(c10::kCPU, iter, alpha); });
  }
#endif
  auto d = device_of(a, b, "aten::add.Tensor");
  return run_functional(d, [&] { return at::cpu::add(view_for_cpu(a), view_for_cpu(b), alpha); });
}
at::Tensor sub(const at::Tensor& a, const at::Tensor& b, const at::Scalar& alpha) {
#if NPUSIM_CPU_STUBS
  if (fast_operands(a, b)) {
    at::native::sub_check(a, b);
    return fast_functional(a, b, [&](at::TensorIteratorBase& iter) { at::native::alpha_check(iter.common_dtype(), alpha); at::native::add_stub(c10::kCPU, iter, -alpha); });
  }
#endif
  auto d = device_of(a, b, "aten::sub.Tensor");
  return run_functional(d, [&] { return at::cpu::sub(view_for_cpu(a), view_for_cpu(b), alpha); });
}
at::Tensor mul(const at::Tensor& a, const at::Tensor& b) {
#if NPUSIM_CPU_STUBS
  if (fast_operands(a, b)) {
    return fast_functional(a, b, [&](at::TensorIteratorBase& iter) { at::native::mul_stub(c10::kCPU, iter); });
  }
#endif
  auto d = device_of(a, b, "aten::mul.Tensor");
  return run_functional(d, [&] { return at::cpu::mul(view_for_cpu(a), view_for_cpu(b)); });
}
at::Tensor div(const at::Tensor& a, const at::Tensor& b) {
#if NPUSIM_CPU_STUBS
  if (fast_operands(a, b)) {
    return fast_functional(a, b, [&](at::TensorIteratorBase& iter) { at::native::div_true_stub(c10::kCPU, iter); });
  }
#endif
  auto d = device_of(a, b, "aten::div.Tensor");
  return run_functional(d, [&] { return at::cpu::div(view_for_cpu(a), view_for_cpu(b)); });
}
at::Tensor& add_(at::Tensor& a, const at::Tensor& b, const at::Scalar& alpha) {
#if NPUSIM_CPU_STUBS
  if (fast_inplace_operands(a, b)) {
    return fast_inplace(a, b, [&](at::TensorIteratorBase& iter) { at::native::alpha_check(iter.common_dtype(), alpha); at::native::add_stub(c10::kCPU, iter, alpha); });
  }
#endif
  auto d = device_of(a, b, "aten::add_.Tensor");
  return run_inplace(a, d, [&](at::Tensor& x) { at::cpu::add_(x, view_for_cpu(b), alpha); });
}
at::Tensor& sub_(at::Tensor& a, const at::Tensor& b, const at::Scalar& alpha) {
#if NPUSIM_CPU_STUBS
  if (fast_inplace_operands(a, b)) {
    at::native::sub_check(a, b);
    return fast_inplace(a, b, [&](at::TensorIteratorBase& iter) { at::native::alpha_check(iter.common_dtype(), alpha); at::native::add_stub(c10::kCPU, iter, -alpha); });
  }
#endif
  auto d = device_of(a, b, "aten::sub_.Tensor");
  return run_inplace(a, d, [&](at::Tensor& x) { at::cpu::sub_(x, view_for_cpu(b), alpha); });
}
at::Tensor& mul_(at::Tensor& a, const at::Tensor& b) {
#if NPUSIM_CPU_STUBS
  if (fast_inplace_operands(a, b)) {
    return fast_inplace(a, b, [&](at::TensorIteratorBase& iter) { at::native::mul_stub(c10::kCPU, iter); });
  }
#endif
  auto d = device_of(a, b, "aten::mul_.Tensor");
  return run_inplace(a, d, [&](at::Tensor& x) { at::cpu::mul_(x, view_for_cpu(b)); });
}
at::Tensor& div_(at::Tensor& a, const at::Tensor& b) {
#if NPUSIM_CPU_STUBS
  if (fast_inplace_operands(a, b)) {
    return fast_inplace(a, b, [&](at::TensorIteratorBase& iter) { at::native::div_true_stub(c10::kCPU, iter); });
  }
#endif
  auto d = device_of(a, b, "aten::div_.Tensor");
  return run_inplace(a, d, [&](at::Tensor& x) { at::cpu::div_(x, view_for_cpu(b)); });
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
