// Element-wise reductions on raw host buffers, for every dtype c10d supports.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstddef>
#include <cstdint>

namespace torch_npu_sim::dist {

// ReduceOp::RedOpType values (SUM=0 ... PREMUL_SUM=8); PREMUL_SUM reduces as SUM after
// the inputs were scaled, AVG as SUM followed by finalize_average.
void combine(void* dst, const void* src, size_t numel, c10::ScalarType dtype, uint8_t op);
// dst = srcs[0] op srcs[1] op ... op srcs[n-1], in that order (dst may be one of them).
// Works a cache-sized block at a time, so each source is read from memory once.
void reduce_sources(void* dst, const void* const* srcs, int n, size_t numel, c10::ScalarType dtype, uint8_t op);
void finalize_average(void* data, size_t numel, c10::ScalarType dtype, int world);
// Whether `op` is defined for `dtype`; if not, why.
const char* unsupported_reason(c10::ScalarType dtype, uint8_t op);

}  // namespace torch_npu_sim::dist
