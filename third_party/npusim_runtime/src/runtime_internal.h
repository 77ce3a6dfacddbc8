// Shared state of the simulated driver: configuration and per-device bookkeeping.
#pragma once

#include <atomic>
#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

#include "npusim_runtime.h"

namespace npusim_rt {

constexpr int kMaxDevices = 64;

struct DeviceState {
  size_t capacity = 0;              // bytes this device may hand out
  std::atomic<size_t> used{0};      // bytes currently allocated on it
  std::atomic<npusimStream_t> default_stream{nullptr};  // created on first use
};

struct Runtime {
  int device_count = 0;
  std::string device_name;
  std::vector<DeviceState> devices;
  std::string config_error;         // non-empty: the environment was invalid
};

// Parsed on first use; never destroyed (drivers outlive their clients).
Runtime& runtime();
bool valid_device(int device);
int& current_device();              // per thread

}  // namespace npusim_rt

#define NPUSIM_RT_CHECK_INIT()                                         \
  do {                                                                 \
    if (!::npusim_rt::runtime().config_error.empty())                  \
      return npusimErrorInvalidConfiguration;                          \
  } while (0)
