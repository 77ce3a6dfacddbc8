#pragma once

#include <cstdint>
#include <string>

#include <torch/library.h>

namespace torch_npu_sim {
// The zero-copy fallback as a kernel (runs the op's CPU kernel on CPU aliases).
torch::CppFunction npusim_fallback_function();

// How many ATen calls the zero-copy fallback has served in this process (tests use it to
// check that hot ops stay on their native kernels).
uint64_t fallback_call_count();

// ---- OpRouting.cpp ----------------------------------------------------------------------
// Structured ATen ops (add, mul, mse_loss, ...) have a CompositeExplicitAutogradNonFunctional
// kernel that backends without their own kernel get by default: it allocates the output
// and calls the op's out= variant. On npusim that would run the CPU *out=* kernel on a
// pre-shaped output (extra allocation, resize checks, and spurious "output was resized"
// warnings for reductions such as mse_loss). Likewise a few ops (native_layer_norm,
// native_group_norm, addr, ...) have a CompositeExplicitAutograd decomposition beside their
// CPU kernel, with other numerics. Route all such ops that have a CPU kernel to the
// zero-copy fallback, so the CPU's own kernels run, exactly as they do on the CPU.
// Returns the number of operators routed. Also starts watching for operators defined later
// (other libraries' custom ops), which are routed by the same rule.
int route_structured_ops_to_fallback();

// Routes the operators defined since the last call, if any were (cheap when none were).
void route_new_ops_if_noted();

// Routes the operators defined since the last call, then "ns::op[.overload]" if it now
// qualifies (a CPU or composite kernel was just registered); true if it is routed.
bool route_new_ops(const std::string& qualified_name);

// Drops npusim's routing of the operator (before a kernel of its own is registered for
// npusim); true if it was routed.
bool unroute_op(const std::string& qualified_name);

bool op_is_routed(const std::string& qualified_name);

// Routes "ns::op[.overload]" whose only kernel is a catch-all host kernel reading its tensors
// through raw pointers (vLLM's CPU kernels), so that on npusim it runs inside a launch:
// stream-ordered, inside protected memory's access scope, and recorded by graph capture.
// False if the operator has no such kernel (or takes no tensors).
bool route_host_kernel(const std::string& qualified_name);
}  // namespace torch_npu_sim
