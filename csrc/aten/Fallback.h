#pragma once

#include <cstdint>

namespace torch_npu_sim {
// Structured ATen ops (add, mul, mse_loss, ...) have a CompositeExplicitAutogradNonFunctional
// kernel that backends without their own kernel get by default: it allocates the output
// and calls the op's out= variant. On npusim that would run the CPU *out=* kernel on a
// pre-shaped output (extra allocation, resize checks, and spurious "output was resized"
// warnings for reductions such as mse_loss). Likewise a few ops (native_layer_norm,
// native_group_norm, addr, ...) have a CompositeExplicitAutograd decomposition beside their
// CPU kernel, with other numerics. Route all such ops that have a CPU kernel to the
// zero-copy fallback, so the CPU's own kernels run, exactly as they do on the CPU.
// Returns the number of operators routed.
int route_structured_ops_to_fallback();

// How many ATen calls the zero-copy fallback has served in this process (tests use it to
// check that hot ops stay on their native kernels).
uint64_t fallback_call_count();
}  // namespace torch_npu_sim
