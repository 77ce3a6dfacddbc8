// Unit tests of the simulated driver alone (no torch). Run by tests/runtime/test_runtime.py,
// which builds this file with the runtime sources and sets NPUSIM_DEVICE_COUNT=3 and
// NPUSIM_DEVICE_MEMORY=1MiB.
#include <cstdio>
#include <cstring>
#include <vector>

#include "npusim_runtime.h"

static int failures = 0;
#define EXPECT(cond)                                                     \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
      ++failures;                                                        \
    }                                                                    \
  } while (0)

static void test_devices() {
  int count = -1;
  EXPECT(npusimGetDeviceCount(&count) == npusimSuccess && count == 3);
  EXPECT(npusimSetDevice(2) == npusimSuccess);
  int dev = -1;
  EXPECT(npusimGetDevice(&dev) == npusimSuccess && dev == 2);
  EXPECT(npusimSetDevice(3) == npusimErrorInvalidDevice);
  EXPECT(npusimSetDevice(-1) == npusimErrorInvalidDevice);
  npusimDeviceProp prop;
  EXPECT(npusimGetDeviceProperties(&prop, 1) == npusimSuccess);
  EXPECT(prop.totalGlobalMem == (1u << 20) && std::strlen(prop.name) > 0);
  EXPECT(npusimGetDeviceProperties(&prop, 7) == npusimErrorInvalidDevice);
  EXPECT(npusimSetDevice(0) == npusimSuccess);
}

static void test_memory_capacity_and_pointers() {
  EXPECT(npusimSetDevice(1) == npusimSuccess);
  size_t free_bytes = 0, total = 0;
  EXPECT(npusimMemGetInfo(&free_bytes, &total) == npusimSuccess && free_bytes == total);
  void* a = nullptr;
  EXPECT(npusimMalloc(&a, 768 * 1024) == npusimSuccess && a != nullptr);
  void* b = nullptr;
  EXPECT(npusimMalloc(&b, 512 * 1024) == npusimErrorMemoryAllocation && b == nullptr);  // over capacity
  EXPECT(npusimMemGetInfo(&free_bytes, &total) == npusimSuccess && free_bytes == total - 768 * 1024);
  npusimPointerAttributes attr;
  EXPECT(npusimPointerGetAttributes(&attr, static_cast<char*>(a) + 100) == npusimSuccess);
  EXPECT(attr.type == npusimMemoryTypeDevice && attr.device == 1 && attr.base == a);
  int on_stack = 0;
  EXPECT(npusimPointerGetAttributes(&attr, &on_stack) == npusimSuccess && attr.type == npusimMemoryTypeUnregistered);
  EXPECT(npusimFree(&on_stack) == npusimErrorInvalidDevicePointer);  // not ours: refused, no crash
  EXPECT(npusimFree(a) == npusimSuccess);
  EXPECT(npusimFree(a) == npusimErrorInvalidDevicePointer);  // double free detected
  void* h = nullptr;
  EXPECT(npusimHostAlloc(&h, 4096) == npusimSuccess);
  EXPECT(npusimPointerGetAttributes(&attr, h) == npusimSuccess && attr.type == npusimMemoryTypeHost);
  EXPECT(npusimFree(h) == npusimErrorInvalidDevicePointer);  // host memory is freed with FreeHost
  EXPECT(npusimFreeHost(h) == npusimSuccess);
  EXPECT(npusimSetDevice(0) == npusimSuccess);
}

static void test_copies_are_bounds_checked() {
  void* d = nullptr;
  EXPECT(npusimMalloc(&d, 64) == npusimSuccess);
  std::vector<char> host(128, 7), back(64, 0);
  EXPECT(npusimMemcpy(d, host.data(), 64, npusimMemcpyHostToDevice) == npusimSuccess);
  EXPECT(npusimMemcpy(back.data(), d, 64, npusimMemcpyDeviceToHost) == npusimSuccess && back[63] == 7);
  EXPECT(npusimMemcpy(d, host.data(), 128, npusimMemcpyHostToDevice) == npusimErrorInvalidDevicePointer);
  EXPECT(npusimMemcpy(host.data(), back.data(), 8, npusimMemcpyDeviceToHost) == npusimErrorInvalidDevicePointer);
  EXPECT(npusimMemsetAsync(d, 0, 64, nullptr) == npusimSuccess);
  EXPECT(npusimMemcpy(back.data(), d, 64, npusimMemcpyDeviceToHost) == npusimSuccess && back[0] == 0);
  EXPECT(npusimFree(d) == npusimSuccess);
}

static void bump(void* arg) { ++*static_cast<int*>(arg); }

static void test_streams_and_events() {
  int least = 0, greatest = 0;
  EXPECT(npusimDeviceGetStreamPriorityRange(&least, &greatest) == npusimSuccess && greatest < least);
  npusimStream_t s = nullptr;
  EXPECT(npusimStreamCreateWithPriority(&s, 2, -5) == npusimSuccess);
  int priority = 0, dev = -1;
  EXPECT(npusimStreamGetPriority(s, &priority) == npusimSuccess && priority == greatest);  // clamped
  EXPECT(npusimStreamGetDevice(s, &dev) == npusimSuccess && dev == 2);
  int counter = 0;
  EXPECT(npusimLaunchHostFunc(s, bump, &counter) == npusimSuccess && counter == 1);
  uint64_t launches = 0;
  EXPECT(npusimStreamGetLaunchCount(s, &launches) == npusimSuccess && launches == 1);
  EXPECT(npusimStreamQuery(s) == npusimSuccess);

  npusimEvent_t start = nullptr, end = nullptr, untimed = nullptr;
  EXPECT(npusimEventCreateWithFlags(&start, npusimEventDefault) == npusimSuccess);
  EXPECT(npusimEventCreateWithFlags(&end, npusimEventDefault) == npusimSuccess);
  EXPECT(npusimEventCreateWithFlags(&untimed, npusimEventDisableTiming) == npusimSuccess);
  float ms = -1;
  EXPECT(npusimEventElapsedTime(&ms, start, end) == npusimErrorEventNotRecorded);
  EXPECT(npusimEventRecord(start, s) == npusimSuccess);
  EXPECT(npusimEventRecord(end, s) == npusimSuccess);
  EXPECT(npusimEventElapsedTime(&ms, start, end) == npusimSuccess && ms >= 0);
  EXPECT(npusimEventRecord(untimed, s) == npusimSuccess);
  EXPECT(npusimEventElapsedTime(&ms, start, untimed) == npusimErrorTimingDisabled);
  EXPECT(npusimStreamWaitEvent(nullptr, end) == npusimSuccess);
  int edev = -1;
  EXPECT(npusimEventGetDevice(end, &edev) == npusimSuccess && edev == 2);

  EXPECT(npusimStreamDestroy(s) == npusimSuccess);
  EXPECT(npusimStreamQuery(s) == npusimErrorInvalidResourceHandle);  // destroyed handle is refused
  EXPECT(npusimLaunchHostFunc(s, bump, &counter) == npusimErrorInvalidResourceHandle && counter == 1);
  npusimStream_t def = nullptr;
  EXPECT(npusimStreamGetDefault(&def, 0) == npusimSuccess);
  EXPECT(npusimStreamDestroy(def) == npusimErrorInvalidResourceHandle);  // default streams live forever
  // a handle of the other kind is refused, not used (or deleted) as the wrong type
  npusimStream_t s2 = nullptr;
  EXPECT(npusimStreamCreateWithPriority(&s2, 1, 0) == npusimSuccess);
  EXPECT(npusimEventDestroy(reinterpret_cast<npusimEvent_t>(s2)) == npusimErrorInvalidResourceHandle);
  EXPECT(npusimEventRecord(reinterpret_cast<npusimEvent_t>(s2), nullptr) == npusimErrorInvalidResourceHandle);
  EXPECT(npusimStreamDestroy(reinterpret_cast<npusimStream_t>(start)) == npusimErrorInvalidResourceHandle);
  EXPECT(npusimLaunchHostFunc(reinterpret_cast<npusimStream_t>(start), bump, &counter) ==
         npusimErrorInvalidResourceHandle);
  EXPECT(npusimStreamDestroy(s2) == npusimSuccess);
  EXPECT(npusimEventQuery(start) == npusimSuccess);  // still a live event
  for (auto e : {start, end, untimed}) EXPECT(npusimEventDestroy(e) == npusimSuccess);
  EXPECT(npusimEventQuery(start) == npusimErrorInvalidResourceHandle);
}

static size_t host_copy_calls = 0;
static void counting_copy(void* dst, const void* src, size_t count) {
  ++host_copy_calls;
  std::memcpy(dst, src, count);
}

// Large copies go to the client's copy function (once, after validation); small ones never.
static void test_host_copy_function() {
  EXPECT(npusimSetDevice(0) == npusimSuccess);
  const size_t big = NPUSIM_HOST_COPY_MIN_BYTES;
  void* dev = nullptr;
  EXPECT(npusimMalloc(&dev, big) == npusimSuccess);
  std::vector<unsigned char> host(big + 1), back(big, 0);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<unsigned char>(i * 7 + 1);
  EXPECT(npusimSetHostCopyFn(counting_copy) == npusimSuccess);
  EXPECT(npusimMemcpy(dev, host.data(), big - 1, npusimMemcpyHostToDevice) == npusimSuccess);
  EXPECT(host_copy_calls == 0);
  EXPECT(npusimMemcpy(dev, host.data(), big, npusimMemcpyHostToDevice) == npusimSuccess);
  EXPECT(npusimMemcpy(back.data(), dev, big, npusimMemcpyDeviceToHost) == npusimSuccess);
  EXPECT(host_copy_calls == 2 && std::memcmp(back.data(), host.data(), big) == 0);
  EXPECT(npusimMemcpy(dev, host.data(), big + 1, npusimMemcpyHostToDevice) == npusimErrorInvalidDevicePointer);
  EXPECT(host_copy_calls == 2);
  EXPECT(npusimSetHostCopyFn(nullptr) == npusimSuccess);
  EXPECT(npusimMemcpy(dev, host.data(), big, npusimMemcpyHostToDevice) == npusimSuccess);
  EXPECT(host_copy_calls == 2);
  EXPECT(npusimFree(dev) == npusimSuccess);
}

int main() {
  test_devices();
  test_memory_capacity_and_pointers();
  test_copies_are_bounds_checked();
  test_streams_and_events();
  test_host_copy_function();
  std::printf("%s\n", failures ? "runtime tests FAILED" : "runtime tests passed");
  return failures ? 1 : 0;
}
