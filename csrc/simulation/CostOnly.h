// Cost-only execution: ops run without values. Each op's outputs get their shapes from its
// Meta kernel and are allocated on the device (reserved, never written), its cost is charged
// on the stream's simulated clock, and no kernel runs (the runtime skips launched work).
#pragma once

#include <ATen/core/boxing/KernelFunction.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include "npusim_runtime.h"

namespace torch_npu_sim::simulation {

inline bool cost_only() { return npusimCostOnly() != 0; }

// Host reads of device values in cost-only mode (.item(), .cpu(), .tolist()): zeros as
// placeholders (the default: programs that only log values keep running), or refused.
void set_refuse_host_reads(bool refuse);
bool refuse_host_reads();

// Runs `op` on `stack` without values on `device` (see above). Ops whose outputs depend on
// values (nonzero, masked_select, .item() of an integer, ...) raise an error naming the op.
void run_without_values(const c10::OperatorHandle& op, torch::jit::Stack* stack, c10::DeviceIndex device);

// A native kernel's arguments run through run_without_values, for natives that compute their
// results inside their launches: `if (cost_only()) return without_values<Sig>("aten::add", "Tensor", a, b, alpha);`
void without_values_boxed(const c10::OperatorHandle& op, torch::jit::Stack* stack);

template <class Sig, class... Args>
decltype(auto) without_values(const char* name, const char* overload, Args&&... args) {
  // looked up per call: natives of one signature (add/sub, mul/div) share this instantiation
  const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow(name, overload);
  return c10::impl::BoxedKernelWrapper<Sig>::call(c10::BoxedKernel::makeFromFunction<&without_values_boxed>(), op,
                                                  c10::DispatchKeySet(c10::DispatchKey::PrivateUse1),
                                                  std::forward<Args>(args)...);
}

}  // namespace torch_npu_sim::simulation
