// Devices: configuration from the environment, the per-thread current device, properties.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <cctype>

#include "runtime_internal.h"

namespace npusim_rt {

size_t parse_size(const char* text, bool* ok) {
  *ok = false;
  if (!text || !*text) return 0;
  char* end = nullptr;
  double value = std::strtod(text, &end);
  if (end == text || value < 0) return 0;
  std::string unit(end);
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double scale = 1;
  if (unit.empty() || unit == "b") scale = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib") scale = 1024.0;
  else if (unit == "m" || unit == "mb" || unit == "mib") scale = 1024.0 * 1024;
  else if (unit == "g" || unit == "gb" || unit == "gib") scale = 1024.0 * 1024 * 1024;
  else if (unit == "t" || unit == "tb" || unit == "tib") scale = 1024.0 * 1024 * 1024 * 1024;
  else return 0;
  *ok = true;
  return static_cast<size_t>(value * scale);
}

static Runtime* make_runtime() {
  auto* rt = new Runtime();
  rt->device_count = 8;
  if (const char* env = std::getenv("NPUSIM_DEVICE_COUNT")) {
    char* end = nullptr;
    long n = std::strtol(env, &end, 10);
    if (end == env || *end != '\0' || n < 0 || n > kMaxDevices)
      rt->config_error = std::string("NPUSIM_DEVICE_COUNT must be an integer in [0, 64], got '") + env + "'";
    else
      rt->device_count = static_cast<int>(n);
  }
  size_t capacity = size_t(16) << 30;
  if (const char* env = std::getenv("NPUSIM_DEVICE_MEMORY")) {
    bool ok = false;
    size_t parsed = parse_size(env, &ok);
    if (!ok || parsed == 0)
      rt->config_error = std::string("NPUSIM_DEVICE_MEMORY must be a size such as 1073741824, 512MiB or 16GiB, got '") + env + "'";
    else
      capacity = parsed;
  }
  const char* name = std::getenv("NPUSIM_DEVICE_NAME");
  rt->device_name = (name && *name) ? name : "NPUSim-1";
  if (!rt->config_error.empty()) rt->device_count = 0;
  rt->devices = std::vector<DeviceState>(rt->device_count);
  for (auto& d : rt->devices) d.capacity = capacity;
  return rt;
}

Runtime& runtime() {
  static Runtime* rt = make_runtime();
  return *rt;
}

bool valid_device(int device) { return device >= 0 && device < runtime().device_count; }

int& current_device() {
  thread_local int device = 0;
  return device;
}

}  // namespace npusim_rt

using namespace npusim_rt;

extern "C" {

const char* npusimGetErrorString(npusimError_t error) {
  switch (error) {
    case npusimSuccess: return "no error";
    case npusimErrorInvalidValue: return "invalid argument";
    case npusimErrorMemoryAllocation: return "out of memory";
    case npusimErrorInvalidDevice: return "invalid device ordinal";
    case npusimErrorInvalidDevicePointer: return "invalid device pointer";
    case npusimErrorInvalidResourceHandle: return "invalid resource handle (stream or event)";
    case npusimErrorNotReady: return "device not ready";
    case npusimErrorEventNotRecorded: return "event has not been recorded";
    case npusimErrorTimingDisabled: return "event was created without timing enabled";
    case npusimErrorInvalidConfiguration:
      return runtime().config_error.empty() ? "invalid configuration" : runtime().config_error.c_str();
  }
  return "unknown error";
}

npusimError_t npusimGetDeviceCount(int* count) {
  if (!count) return npusimErrorInvalidValue;
  NPUSIM_RT_CHECK_INIT();
  *count = runtime().device_count;
  return npusimSuccess;
}

npusimError_t npusimGetDevice(int* device) {
  if (!device) return npusimErrorInvalidValue;
  NPUSIM_RT_CHECK_INIT();
  *device = current_device();
  return npusimSuccess;
}

npusimError_t npusimSetDevice(int device) {
  NPUSIM_RT_CHECK_INIT();
  if (!valid_device(device)) return npusimErrorInvalidDevice;
  current_device() = device;
  return npusimSuccess;
}

npusimError_t npusimGetDeviceProperties(npusimDeviceProp* prop, int device) {
  if (!prop) return npusimErrorInvalidValue;
  NPUSIM_RT_CHECK_INIT();
  if (!valid_device(device)) return npusimErrorInvalidDevice;
  std::memset(prop, 0, sizeof(*prop));
  std::strncpy(prop->name, runtime().device_name.c_str(), sizeof(prop->name) - 1);
  prop->totalGlobalMem = runtime().devices[device].capacity;
  prop->major = 1;
  prop->minor = 0;
  prop->multiProcessorCount = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->warpSize = 32;
  prop->l2CacheSize = size_t(32) << 20;
  return npusimSuccess;
}

}  // extern "C"
