// Checks on runtime calls: a failing call becomes a c10::Error naming the call.
#pragma once

#include <c10/util/Exception.h>

#include "npusim_runtime.h"

#define NPUSIM_CHECK(call)                                                      \
  do {                                                                          \
    npusimError_t npusim_err_ = (call);                                         \
    TORCH_CHECK(npusim_err_ == npusimSuccess, "npusim runtime error: ",          \
                npusimGetErrorString(npusim_err_), " (in ", #call, ")");         \
  } while (0)

namespace torch_npu_sim {

inline int device_count() {
  int count = 0;
  NPUSIM_CHECK(npusimGetDeviceCount(&count));
  return count;
}

inline void check_device_index(int64_t index) {
  int count = device_count();
  TORCH_CHECK_INDEX(index >= 0 && index < count, "Invalid npusim device index ", index,
                    ": there are ", count, " npusim device(s) (valid indices are 0..",
                    count - 1, "; set NPUSIM_DEVICE_COUNT to change the number)");
}

inline int current_device() {
  int device = 0;
  NPUSIM_CHECK(npusimGetDevice(&device));
  return device;
}

}  // namespace torch_npu_sim
