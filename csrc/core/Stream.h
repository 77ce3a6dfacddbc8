// c10::Stream <-> runtime stream. Stream ids: 0 is a device's default stream; others
// index a per-device pool (as CUDA does), so torch.npusim.Stream() never leaks handles.
#pragma once

#include <c10/core/Stream.h>

#include "npusim_runtime.h"

namespace torch_npu_sim {

c10::Stream default_stream(c10::DeviceIndex device);
c10::Stream stream_from_pool(c10::DeviceIndex device, int priority);
c10::Stream current_stream(c10::DeviceIndex device = -1);
void set_current_stream(const c10::Stream& stream);  // per thread, like CUDA
npusimStream_t runtime_stream(const c10::Stream& stream);
int stream_priority(const c10::Stream& stream);

}  // namespace torch_npu_sim

namespace torch_npu_sim {
// Work items (copies, fills, kernels) launched on all of a device's streams so far.
uint64_t launch_count(c10::DeviceIndex device);
}  // namespace torch_npu_sim
