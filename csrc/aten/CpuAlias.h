// Zero-copy bridges between npusim tensors and CPU tensors over the same bytes. In CPU
// mode npusim memory is host memory, so a CPU kernel can run on it directly.
#pragma once

#include <ATen/ATen.h>

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
// accounting); exceptions thrown by fn propagate to the caller.
void launch_on_stream(c10::DeviceIndex device, const std::function<void()>& fn);

}  // namespace torch_npu_sim
