// Unboxed kernels for the arithmetic ops that dominate small-op latency (add, sub, mul,
// div and their in-place forms).
//
// Fast path: two npusim operands of one floating dtype. A TensorIterator over the npusim
// tensors themselves runs the CPU's kernel for the op (the function add_stub, mul_stub or
// div_true_stub would call) on their bytes (host memory); the result is allocated by the
// iterator on the npusim device.
// Other cases use the fallback's zero-copy scheme minus boxing: the CPU kernel runs on CPU
// aliases (called through at::cpu::, so the dispatcher and autograd are not crossed a
// second time) and its result, an npusim allocation, is adopted as is.
//
// The CPU kernels are found at run time, not linked: a stub's entry point
// (DispatchStubImpl::get_call_ptr) and its kernel variants are declared according to the
// CPU capabilities libtorch was built with (the x86-64 wheels: DEFAULT, AVX512, AVX2), and
// linking against one build's symbols would keep the extension from loading on any other
// build of the same torch. So they are looked up with dlsym when first needed; when one is
// missing (another build, another architecture) that op takes the aliasing path, with the
// same results. NPUSIM_TEST_HIDE_SYMBOLS (a comma-separated list of substrings of symbol
// names, or "*") makes the lookup of matching symbols fail, for tests.
#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

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
#include "simulation/CostOnly.h"
#include "graphs/Capture.h"
#include "graphs/Graphs.h"
#include "aten/PointwiseOps.h"
#include "simulation/OpCost.h"
#include "core/Allocator.h"
#include "core/Runtime.h"

namespace torch_npu_sim {
namespace {

constexpr auto kNpu = c10::DeviceType::PrivateUse1;

// ---- the CPU kernels, found at run time -------------------------------------------------

using BinaryKernel = void (*)(at::TensorIteratorBase&);
using AlphaKernel = void (*)(at::TensorIteratorBase&, const c10::Scalar&);

bool hidden_for_tests(const char* symbol) {
  const char* hide = std::getenv("NPUSIM_TEST_HIDE_SYMBOLS");
  if (!hide || !*hide) return false;
  std::string list(hide);
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    std::string item = list.substr(start, end - start);
    if (item == "*" || (!item.empty() && std::strstr(symbol, item.c_str()))) return true;
    start = end + 1;
  }
  return false;
}

void* lookup(const char* symbol) {
  if (hidden_for_tests(symbol)) return nullptr;
  return dlsym(RTLD_DEFAULT, symbol);  // searches our scope, which holds libtorch_cpu
}

// The kernel the stub `stub_symbol` would run on the CPU. `variants` is the mangled name
// of its DispatchStub<...> up to the variant's name.
void* cpu_kernel(const char* stub_symbol, const std::string& variants) {
#if defined(__x86_64__)
  // at::native::DispatchStubImpl::get_call_ptr(DeviceType, void* DEFAULT, void* AVX512,
  // void* AVX2) of the x86-64 builds; `this` is the stub object, whose only data member is
  // its DispatchStubImpl
  using GetCallPtr = void* (*)(void* stub, c10::DeviceType, void*, void*, void*);
  auto get_call_ptr = reinterpret_cast<GetCallPtr>(
      lookup("_ZN2at6native16DispatchStubImpl12get_call_ptrEN3c1010DeviceTypeEPvS4_S4_"));
  void* stub = lookup(stub_symbol);
  void* fns[3] = {nullptr, nullptr, nullptr};
  const char* names[3] = {"7DEFAULTE", "6AVX512E", "4AVX2E"};
  for (int i = 0; i < 3; ++i) {
    void* slot = lookup((variants + names[i]).c_str());  // a static FnPtr member
    if (!slot) return nullptr;
    fns[i] = *static_cast<void**>(slot);
  }
  if (!get_call_ptr || !stub || !fns[0]) return nullptr;
  return get_call_ptr(stub, c10::kCPU, fns[0], fns[1], fns[2]);
#else
  (void)stub_symbol;
  (void)variants;
  return nullptr;  // the variants are declared otherwise here: the aliasing path serves
#endif
}

struct CpuKernels {
  AlphaKernel add = nullptr;  // add and sub (sub is add with -alpha)
  BinaryKernel mul = nullptr;
  BinaryKernel div_true = nullptr;
};

const CpuKernels& cpu_kernels() {
  static const CpuKernels kernels = [] {
    const std::string prefix = "_ZN2at6native12DispatchStubIPFvRNS_18TensorIteratorBaseE";
    CpuKernels k;
    k.add = reinterpret_cast<AlphaKernel>(
        cpu_kernel("_ZN2at6native8add_stubE", prefix + "RKN3c106ScalarEENS0_30add_stub_DECLARE_DISPATCH_typeEE"));
    k.mul = reinterpret_cast<BinaryKernel>(
        cpu_kernel("_ZN2at6native8mul_stubE", prefix + "ENS0_30mul_stub_DECLARE_DISPATCH_typeEE"));
    k.div_true = reinterpret_cast<BinaryKernel>(
        cpu_kernel("_ZN2at6native13div_true_stubE", prefix + "ENS0_35div_true_stub_DECLARE_DISPATCH_typeEE"));
    return k;
  }();
  return kernels;
}

std::atomic<uint64_t> fast_path_calls{0};

// true (and counted) if the fast path's kernel was found
template <typename Kernel>
bool counted(Kernel kernel) {
  if (!kernel) return false;
  fast_path_calls.fetch_add(1, std::memory_order_relaxed);
  return true;
}

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

// Whether the op's stream is capturing a graph (then it is recorded, not run).
bool capturing(const at::Tensor& a, const at::Tensor& b, const char* op) {
  return graphs::current_stream_capturing(device_of(a, b, op));
}

at::Tensor view_for_cpu(const at::Tensor& t) { return t.device().type() == kNpu ? cpu_alias(t) : t; }

// The simulated cost of a binary pointwise op, filled in once its result exists (only when
// simulation wants costs: the hot path stays free).
struct PointwiseCost : simulation::LaunchCost {
  using LaunchCost::LaunchCost;
  void fill(const at::Tensor& a, const at::Tensor& b, const at::Tensor& out) {
    if (wanted) cost = simulation::pointwise_cost(cost.name, a, b, out);
  }
};

template <typename Fn>
at::Tensor run_functional(const char* name, const at::Tensor& a, const at::Tensor& b, c10::DeviceIndex device, Fn&& fn) {
  c10::OptionalDeviceGuard guard;
  if (current_device() != device) guard.reset_device(c10::Device(kNpu, device));
  at::Tensor out;
  {
    AllocateOnNpuSim here(device);
    PointwiseCost cost(name);
    launch_on_stream(device, [&] { out = fn(); cost.fill(a, b, out); }, cost.get());
  }
  return adopt_as_npusim(out, device);
}

template <typename Fn>
at::Tensor& run_inplace(const char* name, at::Tensor& self, const at::Tensor& other, c10::DeviceIndex device, Fn&& fn) {
  TORCH_CHECK(self.device().type() == kNpu, "npusim: in-place result must be an npusim tensor, got ", self.device());
  c10::OptionalDeviceGuard guard;
  if (current_device() != device) guard.reset_device(c10::Device(kNpu, device));
  at::Tensor alias = cpu_alias(self);
  PointwiseCost cost(name);
  launch_on_stream(device, [&] { fn(alias); cost.fill(self, other, self); }, cost.get());
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
at::Tensor fast_functional(const char* name, const at::Tensor& a, const at::Tensor& b, Stub&& stub) {
  at::Tensor out;
  auto iter = at::TensorIterator::borrowing_binary_op(out, a, b);
  PointwiseCost cost(name);
  launch_on_stream(a.device().index(), [&] { stub(iter); cost.fill(a, b, iter.output()); }, cost.get());
  return iter.output();
}

// in-place: only when `b` broadcasts to `a`'s shape (otherwise the aliasing path raises
// the CPU's error)
bool fast_inplace_operands(const at::Tensor& a, const at::Tensor& b) {
  return fast_operands(a, b) && (a.sizes() == b.sizes() ||
                                 (b.dim() <= a.dim() && at::infer_size_dimvector(a.sizes(), b.sizes()) == a.sizes()));
}

template <typename Stub>
at::Tensor& fast_inplace(const char* name, at::Tensor& a, const at::Tensor& b, Stub&& stub) {
  auto iter = at::TensorIterator::borrowing_binary_op(a, a, b);
  PointwiseCost cost(name);
  launch_on_stream(a.device().index(), [&] { stub(iter); cost.fill(a, b, a); }, cost.get());
  return a;
}

at::Tensor add(const at::Tensor& a, const at::Tensor& b, const at::Scalar& alpha) {
  if (graphs::capture_underway() && capturing(a, b, "aten::add.Tensor"))
    return graphs::record_unboxed(device_of(a, b, "aten::add.Tensor"), "aten::add", "Tensor", a, b, alpha)[0].toTensor();
  if (simulation::cost_only())
    return simulation::without_values<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Scalar&)>("aten::add", "Tensor", a, b, alpha);
  if (fast_operands(a, b) && counted(cpu_kernels().add)) {
    return fast_functional("aten::add", a, b, [&](at::TensorIteratorBase& iter) { at::native::alpha_check(iter.common_dtype(), alpha); cpu_kernels().add(iter, alpha); });
  }
  auto d = device_of(a, b, "aten::add.Tensor");
  return run_functional("aten::add", a, b, d, [&] { return at::cpu::add(view_for_cpu(a), view_for_cpu(b), alpha); });
}
at::Tensor sub(const at::Tensor& a, const at::Tensor& b, const at::Scalar& alpha) {
  if (graphs::capture_underway() && capturing(a, b, "aten::sub.Tensor"))
    return graphs::record_unboxed(device_of(a, b, "aten::sub.Tensor"), "aten::sub", "Tensor", a, b, alpha)[0].toTensor();
  if (simulation::cost_only())
    return simulation::without_values<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Scalar&)>("aten::sub", "Tensor", a, b, alpha);
  if (fast_operands(a, b) && counted(cpu_kernels().add)) {
    at::native::sub_check(a, b);
    return fast_functional("aten::sub", a, b, [&](at::TensorIteratorBase& iter) { at::native::alpha_check(iter.common_dtype(), alpha); cpu_kernels().add(iter, -alpha); });
  }
  auto d = device_of(a, b, "aten::sub.Tensor");
  return run_functional("aten::sub", a, b, d, [&] { return at::cpu::sub(view_for_cpu(a), view_for_cpu(b), alpha); });
}
at::Tensor mul(const at::Tensor& a, const at::Tensor& b) {
  if (graphs::capture_underway() && capturing(a, b, "aten::mul.Tensor"))
    return graphs::record_unboxed(device_of(a, b, "aten::mul.Tensor"), "aten::mul", "Tensor", a, b)[0].toTensor();
  if (simulation::cost_only())
    return simulation::without_values<at::Tensor(const at::Tensor&, const at::Tensor&)>("aten::mul", "Tensor", a, b);
  if (fast_operands(a, b) && counted(cpu_kernels().mul)) {
    return fast_functional("aten::mul", a, b, [&](at::TensorIteratorBase& iter) { cpu_kernels().mul(iter); });
  }
  auto d = device_of(a, b, "aten::mul.Tensor");
  return run_functional("aten::mul", a, b, d, [&] { return at::cpu::mul(view_for_cpu(a), view_for_cpu(b)); });
}
at::Tensor div(const at::Tensor& a, const at::Tensor& b) {
  if (graphs::capture_underway() && capturing(a, b, "aten::div.Tensor"))
    return graphs::record_unboxed(device_of(a, b, "aten::div.Tensor"), "aten::div", "Tensor", a, b)[0].toTensor();
  if (simulation::cost_only())
    return simulation::without_values<at::Tensor(const at::Tensor&, const at::Tensor&)>("aten::div", "Tensor", a, b);
  if (fast_operands(a, b) && counted(cpu_kernels().div_true)) {
    return fast_functional("aten::div", a, b, [&](at::TensorIteratorBase& iter) { cpu_kernels().div_true(iter); });
  }
  auto d = device_of(a, b, "aten::div.Tensor");
  return run_functional("aten::div", a, b, d, [&] { return at::cpu::div(view_for_cpu(a), view_for_cpu(b)); });
}
at::Tensor& add_(at::Tensor& a, const at::Tensor& b, const at::Scalar& alpha) {
  if (graphs::capture_underway() && capturing(a, b, "aten::add_.Tensor")) {
    graphs::record_unboxed(device_of(a, b, "aten::add_.Tensor"), "aten::add_", "Tensor", a, b, alpha);
    return a;
  }
  if (simulation::cost_only())
    return simulation::without_values<at::Tensor&(at::Tensor&, const at::Tensor&, const at::Scalar&)>("aten::add_", "Tensor", a, b, alpha);
  if (fast_inplace_operands(a, b) && counted(cpu_kernels().add)) {
    return fast_inplace("aten::add_", a, b, [&](at::TensorIteratorBase& iter) { at::native::alpha_check(iter.common_dtype(), alpha); cpu_kernels().add(iter, alpha); });
  }
  auto d = device_of(a, b, "aten::add_.Tensor");
  return run_inplace("aten::add_", a, b, d, [&](at::Tensor& x) { at::cpu::add_(x, view_for_cpu(b), alpha); });
}
at::Tensor& sub_(at::Tensor& a, const at::Tensor& b, const at::Scalar& alpha) {
  if (graphs::capture_underway() && capturing(a, b, "aten::sub_.Tensor")) {
    graphs::record_unboxed(device_of(a, b, "aten::sub_.Tensor"), "aten::sub_", "Tensor", a, b, alpha);
    return a;
  }
  if (simulation::cost_only())
    return simulation::without_values<at::Tensor&(at::Tensor&, const at::Tensor&, const at::Scalar&)>("aten::sub_", "Tensor", a, b, alpha);
  if (fast_inplace_operands(a, b) && counted(cpu_kernels().add)) {
    at::native::sub_check(a, b);
    return fast_inplace("aten::sub_", a, b, [&](at::TensorIteratorBase& iter) { at::native::alpha_check(iter.common_dtype(), alpha); cpu_kernels().add(iter, -alpha); });
  }
  auto d = device_of(a, b, "aten::sub_.Tensor");
  return run_inplace("aten::sub_", a, b, d, [&](at::Tensor& x) { at::cpu::sub_(x, view_for_cpu(b), alpha); });
}
at::Tensor& mul_(at::Tensor& a, const at::Tensor& b) {
  if (graphs::capture_underway() && capturing(a, b, "aten::mul_.Tensor")) {
    graphs::record_unboxed(device_of(a, b, "aten::mul_.Tensor"), "aten::mul_", "Tensor", a, b);
    return a;
  }
  if (simulation::cost_only())
    return simulation::without_values<at::Tensor&(at::Tensor&, const at::Tensor&)>("aten::mul_", "Tensor", a, b);
  if (fast_inplace_operands(a, b) && counted(cpu_kernels().mul)) {
    return fast_inplace("aten::mul_", a, b, [&](at::TensorIteratorBase& iter) { cpu_kernels().mul(iter); });
  }
  auto d = device_of(a, b, "aten::mul_.Tensor");
  return run_inplace("aten::mul_", a, b, d, [&](at::Tensor& x) { at::cpu::mul_(x, view_for_cpu(b)); });
}
at::Tensor& div_(at::Tensor& a, const at::Tensor& b) {
  if (graphs::capture_underway() && capturing(a, b, "aten::div_.Tensor")) {
    graphs::record_unboxed(device_of(a, b, "aten::div_.Tensor"), "aten::div_", "Tensor", a, b);
    return a;
  }
  if (simulation::cost_only())
    return simulation::without_values<at::Tensor&(at::Tensor&, const at::Tensor&)>("aten::div_", "Tensor", a, b);
  if (fast_inplace_operands(a, b) && counted(cpu_kernels().div_true)) {
    return fast_inplace("aten::div_", a, b, [&](at::TensorIteratorBase& iter) { cpu_kernels().div_true(iter); });
  }
  auto d = device_of(a, b, "aten::div_.Tensor");
  return run_inplace("aten::div_", a, b, d, [&](at::Tensor& x) { at::cpu::div_(x, view_for_cpu(b)); });
}

}  // namespace

PointwiseFastPath pointwise_fast_path() {
  const auto& k = cpu_kernels();
  return {k.add != nullptr, k.mul != nullptr, k.div_true != nullptr, fast_path_calls.load(std::memory_order_relaxed)};
}

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
