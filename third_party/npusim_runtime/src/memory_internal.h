// What memory.cpp tells ipc.cpp about an allocation it made shareable.
#pragma once

#include <cstddef>
#include <cstdint>

#include "npusim_runtime.h"

namespace npusim_rt {

struct SharedAllocation {
  void* base;     // start of the allocation
  size_t size;    // bytes asked for
  size_t mapped;  // bytes of its mapping (page-rounded)
  int fd;         // the memfd behind it, owned by memory.cpp
  uint64_t serial;
};

// Describes the shareable device allocation containing `ptr`.
npusimError_t share_device_allocation(const void* ptr, SharedAllocation* out);

}  // namespace npusim_rt
