#include "aten/CpuAlias.h"

#include <exception>

#include <c10/core/CPUAllocator.h>

#include "core/Allocator.h"
#include "core/Runtime.h"
#include "core/Stream.h"
#include "graphs/Capture.h"
#include "graphs/Graphs.h"

namespace torch_npu_sim {

c10::intrusive_ptr<c10::StorageImpl> cpu_alias_storage(const c10::Storage& storage) {
  c10::DataPtr bytes(storage.unsafeGetStorageImpl()->mutable_data(), c10::Device(c10::kCPU));
  // The CPU allocator (the router) keeps a resize by the CPU kernel inside npusim memory
  // while the DataPtr still says CPU, so CPU-side device checks stay consistent.
  return c10::make_intrusive<c10::StorageImpl>(c10::StorageImpl::use_byte_size_t(), storage.nbytes(),
                                               std::move(bytes), c10::GetCPUAllocator(),
                                               storage.resizable());
}

at::Tensor tensor_on_storage(c10::Storage storage, c10::DispatchKey key, const at::Tensor& like) {
  auto t = at::detail::make_tensor<c10::TensorImpl>(std::move(storage), c10::DispatchKeySet(key),
                                                    like.dtype());
  auto* impl = t.unsafeGetTensorImpl();
  impl->set_sizes_and_strides(like.sizes(), like.strides(), like.storage_offset());
  if (like.is_conj()) impl->_set_conj(true);
  if (like.is_neg()) impl->_set_neg(true);
  return t;
}

at::Tensor cpu_alias(const at::Tensor& t) {
  return tensor_on_storage(c10::Storage(cpu_alias_storage(t.storage())), c10::DispatchKey::CPU, t);
}

at::Tensor adopt_as_npusim(const at::Tensor& cpu, c10::DeviceIndex device) {
  auto* storage = cpu.storage().unsafeGetStorageImpl();
  auto& data = storage->mutable_data_ptr();
  if (CachingAllocator::owns(data) && data.device().type() == c10::kCPU && c10::raw::intrusive_ptr::use_count(storage) == 1 &&
      data.get() != nullptr) {
    c10::DataPtr owned = storage->set_data_ptr(c10::DataPtr(nullptr, c10::Device(c10::kCPU)));
    owned.unsafe_set_device(c10::Device(c10::DeviceType::PrivateUse1, device));
    auto npu_storage = c10::make_intrusive<c10::StorageImpl>(
        c10::StorageImpl::use_byte_size_t(), storage->nbytes(), std::move(owned), &caching_allocator(),
        /*resizable=*/true);
    return tensor_on_storage(c10::Storage(std::move(npu_storage)), c10::DispatchKey::PrivateUse1, cpu);
  }
  // memory from elsewhere (a CPU input returned as is, a constant): copy it over
  auto out = at::empty_strided(cpu.sizes(), cpu.strides(),
                               cpu.options().device(c10::Device(c10::DeviceType::PrivateUse1, device)));
  cpu_alias(out).copy_(cpu);
  return out;
}

namespace {
struct LaunchArgs {
  const std::function<void()>* fn;
  std::exception_ptr error;
};
void trampoline(void* arg) {
  auto* args = static_cast<LaunchArgs*>(arg);
  try {
    (*args->fn)();
  } catch (...) {
    args->error = std::current_exception();
  }
}
}  // namespace

// Work that reaches a launch while its stream captures was not recorded by the graph layer:
// running it now would be a silent difference from replay, so it is an error.
void refuse_if_capturing(c10::DeviceIndex device, const char* what) {
  if (graphs::capture_underway() && graphs::current_stream_capturing(device))
    graphs::fail_uncapturable(what, "npusim has no graph recording for this kernel yet");
}

void launch_on_stream(c10::DeviceIndex device, const std::function<void()>& fn, const npusimKernelCost* cost) {
  refuse_if_capturing(device, cost && cost->name ? cost->name : "a native npusim kernel");
  LaunchArgs args{&fn, nullptr};
  NPUSIM_CHECK(npusimLaunchKernel(runtime_stream(current_stream(device)), &trampoline, &args, cost));
  if (args.error) std::rethrow_exception(args.error);
}

void launch_copy_on_stream(c10::DeviceIndex device, const std::function<void()>& fn, npusimMemcpyKind kind,
                           double bytes, bool host_waits) {
  refuse_if_capturing(device, "a copy");
  LaunchArgs args{&fn, nullptr};
  NPUSIM_CHECK(npusimLaunchCopy(runtime_stream(current_stream(device)), &trampoline, &args, kind, bytes,
                                host_waits ? 1 : 0));
  if (args.error) std::rethrow_exception(args.error);
}

c10::DeviceIndex common_npusim_device(std::initializer_list<const at::Tensor*> tensors, const char* op) {
  c10::DeviceIndex device = -1;
  for (const at::Tensor* t : tensors) {
    if (!t || !t->defined()) continue;
    TORCH_CHECK(t->device().type() == c10::DeviceType::PrivateUse1,
                "Expected all tensors to be on the same device, but found at least two devices, npusim and ",
                t->device(), "! (when checking arguments for ", op, ")");
    if (device < 0) device = t->device().index();
    TORCH_CHECK(t->device().index() == device, "Expected all tensors to be on the same device, but found at least two devices, ",
                c10::Device(c10::DeviceType::PrivateUse1, device), " and ", t->device(), "! (when checking arguments for ", op, ")");
  }
  return device;
}

}  // namespace torch_npu_sim
