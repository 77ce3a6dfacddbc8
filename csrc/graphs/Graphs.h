// The graph layer's face to the rest of the extension: kernels ask whether their stream
// captures and hand their call over to be recorded; bindings register the implementation.
#pragma once

#include <functional>
#include <string>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

namespace torch_npu_sim::graphs {

void register_graph_impl();  // once PrivateUse1 carries npusim's name
c10::MempoolId_t new_pool_handle();

bool current_stream_capturing(c10::DeviceIndex device);  // the calling thread's current stream
// Records the boxed call on top of `stack` into the capture of `device`'s current stream and
// leaves its results there (see Recording::record).
void record_call(const c10::OperatorHandle& op, torch::jit::Stack* stack, c10::DeviceIndex device);

// Records a host function working on device memory through raw pointers (a compiled
// kernel) into the capture of `device`'s current stream: each replay calls it again.
void record_host_function(c10::DeviceIndex device, std::string name, std::function<void()> fn);

// For native kernels: records op `name.overload` called with `args` (its results on return).
template <class... Args>
torch::jit::Stack record_unboxed(c10::DeviceIndex device, const char* name, const char* overload, Args&&... args) {
  const auto& op = c10::Dispatcher::singleton().findSchemaOrThrow(name, overload);
  torch::jit::Stack stack;
  torch::jit::push(stack, std::forward<Args>(args)...);
  record_call(op, &stack, device);
  return stack;
}

// Raises when `what` (a host synchronisation) is not permitted now (see Capture.h).
void check_sync_allowed(const char* what, c10::DeviceIndex device, npusimStream_t stream, void* event);

}  // namespace torch_npu_sim::graphs
