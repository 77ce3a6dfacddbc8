// The add/sub/mul/div fast path (PointwiseOps.cpp): which of its CPU kernels were found at
// run time, and how many calls it has served.
#pragma once

#include <cstdint>

namespace torch_npu_sim {

struct PointwiseFastPath {
  bool add;  // add and sub
  bool mul;
  bool div;
  uint64_t calls;
};

PointwiseFastPath pointwise_fast_path();

}  // namespace torch_npu_sim
