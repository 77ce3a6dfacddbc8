// Zero-copy bridges between npusim tensors and CPU tensors over the same bytes. In CPU
// mode npusim memory is host memory, so a CPU kernel can run on it directly.
#pragma once

#include <ATen/ATen.h>

#include "npusim_runtime.h"

namespace torch_npu_sim {

// A CPU storage over the bytes of an npusim storage (non-owning; resizes allocate npusim memory).
c10::intrusive_ptr<c10::StorageImpl> cpu_alias_storage(const c10::Storage& storage);

// A tensor with `like`'s dtype, sizes, strides, offset and conj/neg bits on `storage`.
at::Tensor tensor_on_storage(c10::Storage storage, c10::DispatchKey key, const at::Tensor& like);

// The CPU alias of an npusim tensor.
at::Tensor cpu_alias(const at::Tensor& npusim_tensor);

// A CPU result as an npusim tensor on `device`: adopts the memory when it came from the
// npusim allocator (see AllocateOnNpuSim), copies it otherwise.
at::Tensor adopt_as_npusim(const at::Tensor& cpu, c10::DeviceIndex device);

// Runs fn on `device`'s current stream through the runtime (stream order, launch
// accounting); exceptions thrown by fn propagate to the caller. `cost` (may be null: launch
// latency only) advances the stream's simulated clock; compute it only when
// simulation_costs_wanted() says so, to keep the hot path free.
void launch_on_stream(c10::DeviceIndex device, const std::function<void()>& fn,
                      const npusimKernelCost* cost = nullptr);

// A copy that fn performs, charged as `bytes` in direction `kind` (host link or device memory);
// host_waits: a blocking copy (the host's simulated time reaches its end).
void launch_copy_on_stream(c10::DeviceIndex device, const std::function<void()>& fn, npusimMemcpyKind kind,
                           double bytes, bool host_waits);

// Whether launches should carry costs (the cost model is on, an observer listens, or
// simulated timing is on): one call into the runtime.
inline bool simulation_costs_wanted() { return npusimCostModelEnabled() != 0; }

// The one npusim device of a native kernel's tensor arguments (undefined ones skipped);
// any other device is CUDA's "Expected all tensors to be on the same device" error.
c10::DeviceIndex common_npusim_device(std::initializer_list<const at::Tensor*> tensors, const char* op);

// cpu_alias / adopt_as_npusim that pass undefined tensors through.
inline at::Tensor cpu_view(const at::Tensor& t) { return t.defined() ? cpu_alias(t) : t; }
inline at::Tensor adopt(const at::Tensor& t, c10::DeviceIndex device) {
  return t.defined() ? adopt_as_npusim(t, device) : t;
}

}  // namespace torch_npu_sim
