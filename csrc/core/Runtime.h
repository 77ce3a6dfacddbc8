// Checks on runtime calls: a failing call becomes a c10::Error naming the call.
#pragma once

#include <c10/util/Exception.h>

#include "npusim_runtime.h"

#define NPUSIM_CHECK(call)                                                      \
  do {                                                                          \
    npusimError_t npusim_err_ = (call);                                         \
    if (C10_UNLIKELY(npusim_err_ != npusimSuccess))                             \
      ::torch_npu_sim::throw_runtime_error(npusim_err_, #call);                 \
  } while (0)

namespace torch_npu_sim {

// "npusim runtime error: <what> (in <call>)"; an invalid NPUSIM_* configuration reads
// "npusim is unavailable: <the variable and its value> ..." instead (RuntimeConfig.cpp).
[[noreturn]] void throw_runtime_error(npusimError_t error, const char* call);

// Raises the reason npusim cannot be used (invalid configuration, no devices), if any.
void check_available();

inline int device_count() {
  int count = 0;
  NPUSIM_CHECK(npusimGetDeviceCount(&count));
  return count;
}

inline void check_device_index(int64_t index) {
  int count = device_count();
  if (C10_UNLIKELY(count == 0)) check_available();
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
