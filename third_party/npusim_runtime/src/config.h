// The simulated chip's configuration, read from the environment once, at first use:
//
//   NPUSIM_DEVICE_COUNT   an integer in [0, 64]                         default 8
//   NPUSIM_DEVICE_MEMORY  a positive size: 1073741824, 512MiB, 1.5GiB   default 16GiB
//                         (units B, K/KB/KiB, M.., G.., T.., P.., all powers of 1024;
//                         at most 2^63 - 1 bytes)
//   NPUSIM_DEVICE_NAME    1 to 63 bytes, no control characters         default NPUSim-1
//
// A variable that is set but invalid (empty included) is a configuration error: the
// runtime then has no devices, every call returns npusimErrorInvalidConfiguration
// (npusimGetDeviceCount with a count of 0), and npusimGetConfigurationError names every
// invalid variable and the value it had.
#pragma once

#include <cstddef>
#include <string>

namespace npusim_rt {

constexpr int kDefaultDeviceCount = 8;
constexpr size_t kDefaultDeviceMemory = size_t(16) << 30;
constexpr const char* kDefaultDeviceName = "NPUSim-1";
constexpr size_t kMaxDeviceNameBytes = 63;  // npusimDeviceProp::name holds 64 with the NUL

struct Config {
  int device_count = kDefaultDeviceCount;
  size_t device_memory = kDefaultDeviceMemory;
  std::string device_name = kDefaultDeviceName;
  std::string error;  // empty: valid
};

// Each parser accepts the variable's text and either stores the value and returns true,
// or returns false and leaves `out` alone.
bool parse_device_count(const char* text, int* out);
bool parse_device_memory(const char* text, size_t* out);
bool parse_device_name(const char* text, std::string* out);

// The configuration given by `lookup(name)` (nullptr: the variable is unset).
Config parse_config(const char* (*lookup)(const char* name));

}  // namespace npusim_rt
