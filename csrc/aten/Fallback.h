#pragma once

namespace torch_npu_sim {
// Structured ATen ops (add, mul, mse_loss, ...) have a CompositeExplicitAutogradNonFunctional
// kernel that backends without their own kernel get by default: it allocates the output
// and calls the op's out= variant. On npusim that would run the CPU *out=* kernel on a
// pre-shaped output (extra allocation, resize checks, and spurious "output was resized"
// warnings for reductions such as mse_loss). Route those ops to the zero-copy fallback
// instead, so the CPU's own functional and in-place kernels run, as they do on the CPU.
// Returns the number of operators routed.
int route_structured_ops_to_fallback();
}  // namespace torch_npu_sim
