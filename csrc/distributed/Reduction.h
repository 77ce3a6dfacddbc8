// Element-wise reductions on raw host buffers, for every dtype c10d supports.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstddef>
#include <cstdint>

namespace torch_npu_sim::dist {

// ReduceOp::RedOpType values (SUM=0 ... PREMUL_SUM=8); PREMUL_SUM reduces as SUM after
// the inputs were scaled, AVG as SUM followed by finalize_average.
void combine(void* dst, const void* src, size_t numel, c10::ScalarType dtype, uint8_t op);
void finalize_average(void* data, size_t numel, c10::ScalarType dtype, int world);
// Whether `op` is defined for `dtype`; if not, why.
const char* unsupported_reason(c10::ScalarType dtype, uint8_t op);

}  // namespace torch_npu_sim::dist
