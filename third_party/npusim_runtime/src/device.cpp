// Devices: configuration from the environment, the per-thread current device, properties.
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "config.h"
#include "runtime_internal.h"

namespace npusim_rt {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// [begin, end) of `text` without surrounding white space
void trim(const char* text, const char** begin, const char** end) {
  const char* b = text;
  const char* e = text + std::strlen(text);
  while (b < e && is_space(*b)) ++b;
  while (e > b && is_space(e[-1])) --e;
  *begin = b;
  *end = e;
}

bool equals_lower(const char* b, const char* e, const char* word) {
  size_t n = std::strlen(word);
  if (static_cast<size_t>(e - b) != n) return false;
  for (size_t i = 0; i < n; ++i)
    if (std::tolower(static_cast<unsigned char>(b[i])) != word[i]) return false;
  return true;
}

// log2 of the unit's size, or -1 if it is not one
int unit_shift(const char* b, const char* e) {
  if (b == e || equals_lower(b, e, "b")) return 0;
  static const char prefixes[] = "kmgtp";
  for (int i = 0; prefixes[i]; ++i) {
    const char p[2] = {prefixes[i], 0};
    std::string short_form(p), with_b = short_form + "b", with_ib = short_form + "ib";
    if (equals_lower(b, e, short_form.c_str()) || equals_lower(b, e, with_b.c_str()) ||
        equals_lower(b, e, with_ib.c_str()))
      return 10 * (i + 1);
  }
  return -1;
}

// The value as shown in an error message: quoted, control characters escaped, long values cut.
std::string shown(const char* text) {
  std::string out = "'";
  size_t n = std::strlen(text);
  for (size_t i = 0; i < n && i < 80; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (n > 80) out += "...";
  out += "'";
  return out;
}

constexpr uint64_t kMaxDeviceMemory = uint64_t(INT64_MAX);  // sizes are int64 in PyTorch

}  // namespace

bool parse_device_count(const char* text, int* out) {
  if (!text) return false;
  const char *b, *e;
  trim(text, &b, &e);
  if (b == e) return false;
  int value = 0;
  for (const char* p = b; p < e; ++p) {
    if (!is_digit(*p)) return false;
    value = value * 10 + (*p - '0');
    if (value > kMaxDevices) return false;
  }
  *out = value;
  return true;
}

bool parse_device_memory(const char* text, size_t* out) {
  if (!text) return false;
  const char *b, *e;
  trim(text, &b, &e);
  // number: digits [. digits] or . digits; no sign, exponent, hex, inf or nan
  const char* p = b;
  uint64_t whole = 0;
  bool whole_overflow = false;
  const char* digits_begin = p;
  for (; p < e && is_digit(*p); ++p) {
    if (whole > (UINT64_MAX - 9) / 10) whole_overflow = true;
    else whole = whole * 10 + static_cast<uint64_t>(*p - '0');
  }
  bool has_whole = p > digits_begin;
  uint64_t frac = 0, frac_scale = 1;  // the fraction is frac / frac_scale
  bool has_frac = false;
  if (p < e && *p == '.') {
    ++p;
    for (; p < e && is_digit(*p); ++p) {
      if (frac_scale > uint64_t(1e17)) return false;  // more than 18 decimals
      frac = frac * 10 + static_cast<uint64_t>(*p - '0');
      frac_scale *= 10;
      has_frac = true;
    }
    if (!has_frac) return false;  // "1." or "."
  }
  if (!has_whole && !has_frac) return false;
  while (p < e && is_space(*p)) ++p;  // "16 GiB"
  int shift = unit_shift(p, e);
  if (shift < 0) return false;
  if (whole_overflow || (shift > 0 && whole > (kMaxDeviceMemory >> shift)) || whole > kMaxDeviceMemory) return false;
  uint64_t bytes = whole << shift;
  // floor(frac / frac_scale * 2^shift), one bit at a time (frac < frac_scale <= 10^18)
  uint64_t frac_bytes = 0;
  for (int i = 0; i < shift; ++i) {
    frac *= 2;
    frac_bytes = frac_bytes * 2 + (frac >= frac_scale ? 1 : 0);
    if (frac >= frac_scale) frac -= frac_scale;
  }
  if (frac_bytes > kMaxDeviceMemory - bytes) return false;
  bytes += frac_bytes;
  if (bytes == 0) return false;
  *out = static_cast<size_t>(bytes);
  return true;
}

bool parse_device_name(const char* text, std::string* out) {
  if (!text) return false;
  size_t n = std::strlen(text);
  if (n == 0 || n > kMaxDeviceNameBytes) return false;
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) return false;
  }
  *out = text;
  return true;
}

Config parse_config(const char* (*lookup)(const char* name)) {
  Config config;
  auto fail = [&](const std::string& message) {
    if (!config.error.empty()) config.error += "; ";
    config.error += message;
  };
  if (const char* v = lookup("NPUSIM_DEVICE_COUNT"); v && !parse_device_count(v, &config.device_count))
    fail("NPUSIM_DEVICE_COUNT must be an integer in [0, 64], got " + shown(v));
  if (const char* v = lookup("NPUSIM_DEVICE_MEMORY"); v && !parse_device_memory(v, &config.device_memory))
    fail("NPUSIM_DEVICE_MEMORY must be a positive size of at most 2^63-1 bytes such as 1073741824, 512MiB or "
         "1.5GiB (units B, KiB, MiB, GiB, TiB, PiB), got " + shown(v));
  if (const char* v = lookup("NPUSIM_DEVICE_NAME"); v && !parse_device_name(v, &config.device_name))
    fail("NPUSIM_DEVICE_NAME must be 1 to 63 bytes without control characters, got " + shown(v) + " (" +
         std::to_string(std::strlen(v)) + " bytes)");
  if (!config.error.empty()) config.device_count = 0;
  return config;
}

static const char* lookup_environment(const char* name) { return std::getenv(name); }

static Runtime* make_runtime() {
  Config config = parse_config(&lookup_environment);
  auto* rt = new Runtime();
  rt->config_error = config.error;
  rt->device_count = config.device_count;
  rt->device_name = config.device_name;
  rt->devices = std::vector<DeviceState>(rt->device_count);
  for (auto& d : rt->devices) d.capacity = config.device_memory;
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
    case npusimErrorNotSupported: return "operation not supported";
    case npusimErrorInvalidConfiguration:
      return runtime().config_error.empty() ? "invalid configuration" : runtime().config_error.c_str();
  }
  return "unknown error";
}

const char* npusimGetConfigurationError(void) {
  const std::string& error = runtime().config_error;
  return error.empty() ? nullptr : error.c_str();
}

npusimError_t npusimGetDeviceCount(int* count) {
  if (!count) return npusimErrorInvalidValue;
  *count = 0;
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

npusimError_t npusimSetChipMemory(size_t bytes, const char* name) {
  NPUSIM_RT_CHECK_INIT();
  std::string parsed_name;
  if (bytes == 0 || bytes > kMaxDeviceMemory || (name && !parse_device_name(name, &parsed_name)))
    return npusimErrorInvalidValue;
  Runtime& rt = runtime();
  // the environment's explicit choices win over the chip's
  if (!std::getenv("NPUSIM_DEVICE_MEMORY")) {
    for (auto& d : rt.devices)
      if (d.used.load() > bytes) return npusimErrorMemoryAllocation;
    for (auto& d : rt.devices) d.capacity = bytes;
  }
  if (name && !std::getenv("NPUSIM_DEVICE_NAME")) rt.device_name = parsed_name;
  return npusimSuccess;
}

}  // extern "C"
