// Native npusim kernels: factories, copies, views, resize/set_, fill, scalars and
// record_stream. They never go through the fallback; kernels that touch bytes run
// on the device's current stream through the runtime.
#include <limits>

#include <ATen/EmptyTensor.h>
#include <ATen/native/Resize.h>
#include <ATen/ops/_reshape_alias_native.h>
#include <ATen/ops/_to_copy_native.h>
#include <ATen/ops/as_strided_native.h>
#include <ATen/ops/unfold_native.h>
#include <ATen/ops/view_as_complex_native.h>
#include <ATen/ops/view_as_real_native.h>
#include <ATen/ops/view_native.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include "aten/CpuAlias.h"
#include "graphs/Capture.h"
#include "graphs/Graphs.h"
#include "core/Allocator.h"
#include "core/Runtime.h"
#include "core/Stream.h"
#include "simulation/CostOnly.h"

namespace torch_npu_sim {
namespace {

constexpr auto kNpu = c10::DeviceType::PrivateUse1;
const c10::DispatchKeySet kNpuKeys(c10::DispatchKey::PrivateUse1);

c10::DeviceIndex target_device(std::optional<c10::Device> device) {
  if (device && device->has_index()) {
    check_device_index(device->index());
    return device->index();
  }
  return static_cast<c10::DeviceIndex>(current_device());
}

void check_factory_args(std::optional<c10::Layout> layout, std::optional<bool> pin_memory) {
  TORCH_CHECK(!layout || *layout == c10::kStrided, "npusim supports only strided tensors, got layout ", *layout);
  TORCH_CHECK(!pin_memory || !*pin_memory, "Only dense CPU tensors can be pinned");
}

at::Tensor empty_memory_format(at::IntArrayRef size, std::optional<at::ScalarType> dtype,
                               std::optional<c10::Layout> layout, std::optional<c10::Device> device,
                               std::optional<bool> pin_memory, std::optional<c10::MemoryFormat> memory_format) {
  check_factory_args(layout, pin_memory);
  c10::DeviceIndex index = target_device(device);
  c10::OptionalDeviceGuard guard;
  if (index != current_device()) guard.reset_device(c10::Device(kNpu, index));
  return at::detail::empty_generic(size, &caching_allocator(), kNpuKeys,
                                   c10::dtype_or_default(dtype), memory_format);
}

at::Tensor empty_strided(at::IntArrayRef size, at::IntArrayRef stride, std::optional<at::ScalarType> dtype,
                         std::optional<c10::Layout> layout, std::optional<c10::Device> device,
                         std::optional<bool> pin_memory) {
  check_factory_args(layout, pin_memory);
  c10::DeviceIndex index = target_device(device);
  c10::OptionalDeviceGuard guard;
  if (index != current_device()) guard.reset_device(c10::Device(kNpu, index));
  return at::detail::empty_strided_generic(size, stride, &caching_allocator(), kNpuKeys,
                                           c10::dtype_or_default(dtype));
}

// ---- copies ----------------------------------------------------------------------------

npusimMemcpyKind copy_kind(const at::Tensor& dst, const at::Tensor& src) {
  bool from_npu = src.device().type() == kNpu, to_npu = dst.device().type() == kNpu;
  if (from_npu && to_npu) return npusimMemcpyDeviceToDevice;
  return from_npu ? npusimMemcpyDeviceToHost : npusimMemcpyHostToDevice;
}

// Cost-only mode: device values do not exist. A host read is charged, then gets zeros as
// placeholders (programs that only print or log values keep running), or is refused when
// the user asked for that (sim.set_cost_only(True, host_reads="error")).
void check_host_read(const char* what) {
  TORCH_CHECK(!simulation::refuse_host_reads(), "npusim cost-only mode: ", what,
              " reads a device value on the host, which cost-only mode does not compute (host reads are refused; "
              "host_reads=\"zeros\" gives zeros instead)");
}

at::Tensor& copy_to_host_without_values(at::Tensor& self, const at::Tensor& src, c10::DeviceIndex device) {
  double bytes = static_cast<double>(self.numel()) * static_cast<double>(src.element_size());
  launch_copy_on_stream(device, [] {}, npusimMemcpyDeviceToHost, bytes, /*host_waits=*/true);
  check_host_read("a copy to host memory (.cpu(), .tolist(), .numpy())");
  self.zero_();
  return self;
}

at::Tensor& copy_(at::Tensor& self, const at::Tensor& src, bool non_blocking) {
  TORCH_CHECK(self.defined() && src.defined(), "copy_: both tensors must be defined");
  for (const at::Tensor* t : {static_cast<const at::Tensor*>(&self), &src})
    TORCH_CHECK(t->device().is_cpu() || t->device().type() == kNpu,
                "npusim copy_ supports npusim and cpu tensors, got a tensor on ", t->device());
  if (self.is_same(src) || self.numel() == 0) return self;
  c10::DeviceIndex device = (self.device().type() == kNpu ? self : src).device().index();
  if (graphs::capture_underway() && graphs::current_stream_capturing(device)) {
    // as CUDA: a copy to the host would synchronize, one from pageable memory cannot be replayed
    if (self.device().is_cpu() && !(non_blocking && self.is_pinned()))
      graphs::fail_uncapturable("aten::copy_", "a copy to host memory (.cpu(), .tolist(), .numpy()) synchronizes "
                                               "with the device; copy non_blocking into pinned memory instead");
    if (src.device().is_cpu() && !src.is_pinned())
      graphs::fail_uncapturable("aten::copy_", "a copy from pageable host memory cannot be replayed; copy from "
                                               "pinned memory (tensor.pin_memory()) instead");
    graphs::record_unboxed(device, "aten::copy_", "", self, src, non_blocking);
    return self;
  }
  if (simulation::cost_only() && self.device().is_cpu()) return copy_to_host_without_values(self, src, device);
  bool plain = self.dtype() == src.dtype() && self.sizes() == src.sizes() && self.is_contiguous() &&
               src.is_contiguous() && self.is_conj() == src.is_conj() && self.is_neg() == src.is_neg();
  if (plain) {
    // one stream-ordered copy on the destination device's current stream
    npusimStream_t stream = runtime_stream(current_stream(device));
    npusimMemcpyKind kind = copy_kind(self, src);
    NPUSIM_CHECK(npusimMemcpyAsync(self.data_ptr(), src.data_ptr(), self.nbytes(), kind, stream));
    // simulated time: a blocking copy to the host makes the host wait for it
    if (kind == npusimMemcpyDeviceToHost && !non_blocking) NPUSIM_CHECK(npusimStreamSynchronize(stream));
    return self;
  }
  // casts, broadcasts and strided layouts: the CPU copy kernel on aliases of both sides
  at::Tensor dst_cpu = self.device().type() == kNpu ? cpu_alias(self) : self;
  at::Tensor src_cpu = src.device().type() == kNpu ? cpu_alias(src) : src;
  AllocateOnNpuSim allocate_here(device);
  npusimMemcpyKind kind = copy_kind(self, src);
  // simulated cost: the source's bytes over the host link or device memory
  double bytes = static_cast<double>(self.numel()) * static_cast<double>(src.element_size());
  launch_copy_on_stream(device, [&] { dst_cpu.copy_(src_cpu, non_blocking); }, kind, bytes,
                        kind == npusimMemcpyDeviceToHost && !non_blocking);
  return self;
}

at::Tensor copy_from(const at::Tensor& self, const at::Tensor& dst, bool non_blocking) {
  at::Tensor out = dst;
  copy_(out, self, non_blocking);
  return dst;
}

at::Tensor copy_from_and_resize(const at::Tensor& self, const at::Tensor& dst) {
  at::Tensor out = dst;
  if (out.sizes() != self.sizes()) out.resize_(self.sizes());
  copy_(out, self, false);
  return dst;
}

// `.to(dtype)`, `.cpu()`, `.clone()`-like conversions of an npusim tensor: the result is
// allocated with the source's strides (the Preserve rule for dense tensors) and filled by
// one copy_. Pinned or non-blocking transfers, other layouts and memory formats, and
// conjugate/negative views keep ATen's generic implementation.
at::Tensor to_copy(const at::Tensor& self, std::optional<at::ScalarType> dtype, std::optional<c10::Layout> layout,
                   std::optional<c10::Device> device, std::optional<bool> pin_memory, bool non_blocking,
                   std::optional<c10::MemoryFormat> memory_format) {
  c10::Device target = device.value_or(self.device());
  bool simple = (!layout || *layout == c10::kStrided) && !pin_memory.value_or(false) && !non_blocking &&
                (!memory_format || *memory_format == c10::MemoryFormat::Preserve) &&
                (target.type() == kNpu || target.is_cpu()) && self.layout() == c10::kStrided && !self.is_conj() &&
                !self.is_neg() && self.is_non_overlapping_and_dense();
  if (!simple) return at::native::_to_copy(self, dtype, layout, device, pin_memory, non_blocking, memory_format);
  at::Tensor out = at::empty_strided(self.sizes(), self.strides(),
                                     self.options().dtype(dtype.value_or(self.scalar_type())).device(target));
  out.copy_(self);
  return out;
}

// ---- storage and shape -----------------------------------------------------------------

const at::Tensor& resize_(const at::Tensor& self, at::IntArrayRef size,
                          std::optional<c10::MemoryFormat> memory_format) {
  auto* impl = self.unsafeGetTensorImpl();
  for (auto s : size) TORCH_CHECK(s >= 0, "Trying to create tensor with negative dimension ", s, ": ", size);
  if (impl->sizes() != size) {
    impl->set_sizes_contiguous(size);
  }
  if (memory_format) {
    TORCH_CHECK(*memory_format != c10::MemoryFormat::Preserve, "Unsupported memory format ", *memory_format);
    impl->empty_tensor_restride(*memory_format);
  }
  size_t needed = at::detail::computeStorageNbytes(impl->sizes(), impl->strides(), self.dtype().itemsize(),
                                                   impl->storage_offset());
  if (needed > self.storage().nbytes()) resize_storage_bytes(self.storage().unsafeGetStorageImpl(), needed);
  return self;
}

at::Tensor& set_storage(at::Tensor& self, c10::Storage source, int64_t offset, at::IntArrayRef size,
                        at::IntArrayRef stride) {
  at::native::checkSetStorage(self, std::move(source), offset, size, stride);
  self.unsafeGetTensorImpl()->set_storage_offset(offset);
  c10::DimVector strides = stride.data() ? c10::DimVector(stride) : c10::contiguous_strides(size);
  self.unsafeGetTensorImpl()->set_sizes_and_strides(size, strides, offset);
  size_t needed = at::detail::computeStorageNbytes(size, strides, self.dtype().itemsize(), offset);
  if (needed > self.storage().nbytes()) resize_storage_bytes(self.storage().unsafeGetStorageImpl(), needed);
  return self;
}

at::Tensor& set_source_storage(at::Tensor& self, c10::Storage source) {
  int64_t numel = static_cast<int64_t>(source.nbytes() / self.dtype().itemsize());
  return set_storage(self, std::move(source), 0, {numel}, {});
}

at::Tensor& set_source_tensor(at::Tensor& self, const at::Tensor& source) {
  if (self.is_same(source)) return self;
  return set_storage(self, source.storage(), source.storage_offset(), source.sizes(), source.strides());
}

at::Tensor& set_empty(at::Tensor& self) {
  c10::Storage empty(c10::Storage::use_byte_size_t(), 0,
                     caching_allocator().allocate_on(self.device().index(), 0), &caching_allocator(), true);
  return set_storage(self, std::move(empty), 0, {0}, {});
}

// ---- elementwise helpers that must not allocate ------------------------------------------

at::Tensor& fill_scalar(at::Tensor& self, const c10::Scalar& value) {
  if (graphs::capture_underway() && graphs::current_stream_capturing(self.device().index())) {
    graphs::record_unboxed(self.device().index(), "aten::fill_", "Scalar", self, value);
    return self;
  }
  at::Tensor cpu = cpu_alias(self);
  npusimKernelCost cost{"aten::fill_", static_cast<double>(self.numel()), static_cast<double>(self.nbytes()), 0};
  launch_on_stream(self.device().index(), [&] { cpu.fill_(value); }, simulation_costs_wanted() ? &cost : nullptr);
  return self;
}

at::Tensor& fill_tensor(at::Tensor& self, const at::Tensor& value) {
  TORCH_CHECK(value.dim() == 0, "fill_ only supports 0-dimension value tensor but got tensor with ",
              value.dim(), " dimensions.");
  TORCH_CHECK(value.device().is_cpu() || value.device() == self.device(),
              "Expected all tensors to be on the same device, but found at least two devices, ", self.device(),
              " and ", value.device(), "!");
  if (graphs::capture_underway() && graphs::current_stream_capturing(self.device().index())) {
    graphs::record_unboxed(self.device().index(), "aten::fill_", "Tensor", self, value);  // reads value at replay
    return self;
  }
  return fill_scalar(self, (value.device().is_cpu() ? value : cpu_alias(value)).item());
}

at::Tensor& zero_(at::Tensor& self) { return fill_scalar(self, 0); }

c10::Scalar local_scalar_without_value(const at::Tensor& self) {
  launch_copy_on_stream(self.device().index(), [] {}, npusimMemcpyDeviceToHost,
                        static_cast<double>(self.element_size()), /*host_waits=*/true);
  check_host_read("Tensor.item() (or bool(), int(), float())");
  if (at::isFloatingType(self.scalar_type())) return c10::Scalar(0.0);
  if (at::isComplexType(self.scalar_type())) return c10::Scalar(c10::complex<double>(0, 0));
  if (self.scalar_type() == at::kBool) return c10::Scalar(false);
  return c10::Scalar(static_cast<int64_t>(0));
}

c10::Scalar local_scalar_dense(const at::Tensor& self) {
  graphs::check_sync_allowed("reading a device value on the host (.item(), bool(), int())", self.device().index(),
                             runtime_stream(current_stream(self.device().index())), nullptr);
  if (simulation::cost_only()) return local_scalar_without_value(self);
  c10::Scalar out;
  at::Tensor cpu = cpu_alias(self);
  // a blocking read of one element by the host (simulated time: the host waits for it)
  launch_copy_on_stream(self.device().index(), [&] { out = at::_local_scalar_dense(cpu); }, npusimMemcpyDeviceToHost,
                        static_cast<double>(self.element_size()), /*host_waits=*/true);
  return out;
}

void record_stream(at::Tensor& self, c10::Stream stream) {
  TORCH_CHECK(stream.device_type() == kNpu, "record_stream: expected an npusim stream, got one on ",
              stream.device());
  caching_allocator().recordStream(self.storage().data_ptr(), stream);
}

// `param.data = t` and Module.to() swap a tensor's storage in place only when the two
// TensorImpls are interchangeable; c10 counts CPU, CUDA, ... as dense backends but not
// PrivateUse1, so without this answer Module.to("npusim") would create new Parameters
// (tied weights come apart, optimizers keep the old tensors).
bool has_compatible_shallow_copy_type(const at::Tensor& self, const at::Tensor& from) {
  auto dense = [](const at::Tensor& t) {
    return t.layout() == c10::kStrided && !t.is_quantized() && (t.device().is_cpu() || t.device().type() == kNpu);
  };
  if (self.key_set() == from.key_set()) return true;
  return dense(self) && dense(from);
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("_has_compatible_shallow_copy_type", TORCH_FN(has_compatible_shallow_copy_type));
  m.impl("empty.memory_format", TORCH_FN(empty_memory_format));
  m.impl("empty_strided", TORCH_FN(empty_strided));
  m.impl("copy_", TORCH_FN(copy_));
  m.impl("_copy_from", TORCH_FN(copy_from));
  m.impl("_copy_from_and_resize", TORCH_FN(copy_from_and_resize));
  m.impl("_to_copy", TORCH_FN(to_copy));
  m.impl("view", TORCH_FN(at::native::view));
  m.impl("as_strided", TORCH_FN(at::native::as_strided_tensorimpl));
  m.impl("_reshape_alias", TORCH_FN(at::native::_reshape_alias));
  m.impl("unfold", TORCH_FN(at::native::unfold));
  m.impl("view_as_real", TORCH_FN(at::native::view_as_real));
  m.impl("view_as_complex", TORCH_FN(at::native::view_as_complex));
  m.impl("resize_", TORCH_FN(resize_));
  m.impl("set_.source_Storage_storage_offset", TORCH_FN(set_storage));
  m.impl("set_.source_Storage", TORCH_FN(set_source_storage));
  m.impl("set_.source_Tensor", TORCH_FN(set_source_tensor));
  m.impl("set_", TORCH_FN(set_empty));
  m.impl("fill_.Scalar", TORCH_FN(fill_scalar));
  m.impl("fill_.Tensor", TORCH_FN(fill_tensor));
  m.impl("zero_", TORCH_FN(zero_));
  m.impl("_local_scalar_dense", TORCH_FN(local_scalar_dense));
  m.impl("record_stream", TORCH_FN(record_stream));
}

}  // namespace torch_npu_sim
