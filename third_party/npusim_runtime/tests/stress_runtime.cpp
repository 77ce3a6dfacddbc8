// Multi-threaded stress test of the simulated driver (no torch). Run by
// tests/runtime/test_sanitizers.py, plain and under ThreadSanitizer and
// AddressSanitizer+UBSan, with NPUSIM_DEVICE_COUNT=3 and NPUSIM_DEVICE_MEMORY=1MiB.
//
// Usage: stress_runtime [iterations]. Besides what the sanitizers see, every thread checks
// the results it gets: a call that must succeed never fails (no spurious invalid handle
// while the default stream is being "destroyed", no spurious out-of-memory while another
// thread makes an impossible request), and all memory is returned at the end.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "npusim_runtime.h"

namespace {

constexpr int kDevices = 3;
constexpr size_t kCapacity = size_t(1) << 20;
constexpr int kSharedEvents = 4;

std::atomic<int> failures{0};
std::mutex print_mutex;

#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::lock_guard<std::mutex> lock_(print_mutex);                                 \
      if (failures.fetch_add(1) < 20) std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                                 \
  } while (0)

// Per-thread deterministic random numbers (xorshift): no shared generator to race on.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint32_t next(uint32_t bound) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    return static_cast<uint32_t>(s % bound);
  }
};

npusimStream_t shared_stream = nullptr;  // used by several threads at once
std::atomic<uint64_t> shared_launches{0};
npusimEvent_t shared_events[kSharedEvents];

struct HostArg {
  int expected_device;
  std::atomic<int>* counter;
};

// Runs in stream order on the stream's device: the runtime must have switched to it.
void host_fn(void* p) {
  auto* arg = static_cast<HostArg*>(p);
  int device = -1;
  CHECK(npusimGetDevice(&device) == npusimSuccess && device == arg->expected_device);
  arg->counter->fetch_add(1, std::memory_order_relaxed);
}

// A host function that itself calls the runtime: launches on the shared stream and
// records a shared event (a kernel's completion callback does this kind of thing).
void nested_host_fn(void* p) {
  auto* arg = static_cast<HostArg*>(p);
  int device = -1;
  CHECK(npusimGetDevice(&device) == npusimSuccess && device == arg->expected_device);
  std::atomic<int> inner{0};
  HostArg inner_arg{0, &inner};  // the shared stream lives on device 0
  CHECK(npusimLaunchHostFunc(shared_stream, host_fn, &inner_arg) == npusimSuccess);
  shared_launches.fetch_add(1);
  CHECK(inner.load() == 1);
  CHECK(npusimEventRecord(shared_events[device % kSharedEvents], nullptr) == npusimSuccess);
  arg->counter->fetch_add(1, std::memory_order_relaxed);
}

// Create a stream, run work on it, time it with events, destroy everything.
void stream_churn(int id, int iterations) {
  Rng rng(100 + id);
  for (int i = 0; i < iterations; ++i) {
    int device = static_cast<int>(rng.next(kDevices));
    npusimStream_t s = nullptr;
    CHECK(npusimStreamCreateWithPriority(&s, device, -static_cast<int>(rng.next(2))) == npusimSuccess);
    std::atomic<int> counter{0};
    HostArg arg{device, &counter};
    CHECK(npusimLaunchHostFunc(s, host_fn, &arg) == npusimSuccess);
    CHECK(npusimLaunchHostFunc(s, nested_host_fn, &arg) == npusimSuccess);
    CHECK(counter.load() == 2);
    uint64_t launches = 0;
    CHECK(npusimStreamGetLaunchCount(s, &launches) == npusimSuccess && launches == 2);
    npusimEvent_t start = nullptr, end = nullptr;
    CHECK(npusimEventCreateWithFlags(&start, npusimEventDefault) == npusimSuccess);
    CHECK(npusimEventCreateWithFlags(&end, npusimEventDefault) == npusimSuccess);
    CHECK(npusimEventRecord(start, s) == npusimSuccess);
    HostArg shared_arg{0, &counter};
    CHECK(npusimLaunchHostFunc(shared_stream, host_fn, &shared_arg) == npusimSuccess);
    shared_launches.fetch_add(1);
    CHECK(npusimEventRecord(end, s) == npusimSuccess);
    CHECK(npusimStreamWaitEvent(s, end) == npusimSuccess);
    CHECK(npusimEventSynchronize(end) == npusimSuccess);
    float ms = -1;
    CHECK(npusimEventElapsedTime(&ms, start, end) == npusimSuccess && ms >= 0);
    int event_device = -1;
    CHECK(npusimEventGetDevice(end, &event_device) == npusimSuccess && event_device == device);
    CHECK(npusimEventDestroy(start) == npusimSuccess);
    CHECK(npusimEventDestroy(end) == npusimSuccess);
    CHECK(npusimStreamSynchronize(s) == npusimSuccess);
    CHECK(npusimStreamDestroy(s) == npusimSuccess);
  }
}

// Uses every default stream, by NULL and by handle, and tries to destroy them: the
// destroy must be refused and no use may ever see an invalid handle.
void default_stream_user(int id, int iterations) {
  std::atomic<int> counter{0};
  for (int i = 0; i < iterations; ++i) {
    int device = (i + id) % kDevices;
    CHECK(npusimSetDevice(device) == npusimSuccess);
    npusimStream_t def = nullptr;
    CHECK(npusimStreamGetDefault(&def, device) == npusimSuccess && def != nullptr);
    HostArg arg{device, &counter};
    CHECK(npusimLaunchHostFunc(nullptr, host_fn, &arg) == npusimSuccess);
    CHECK(npusimLaunchHostFunc(def, host_fn, &arg) == npusimSuccess);
    CHECK(npusimStreamQuery(def) == npusimSuccess);
    int stream_device = -1;
    CHECK(npusimStreamGetDevice(def, &stream_device) == npusimSuccess && stream_device == device);
    CHECK(npusimStreamDestroy(def) == npusimErrorInvalidResourceHandle);
    CHECK(npusimStreamSynchronize(nullptr) == npusimSuccess);
    CHECK(npusimDeviceSynchronize() == npusimSuccess);
  }
  CHECK(counter.load() == 2 * iterations);
}

// Re-records the shared events on assorted streams while readers look at them.
void event_recorder(int id, int iterations) {
  Rng rng(200 + id);
  npusimStream_t own = nullptr;
  CHECK(npusimStreamCreateWithPriority(&own, id % kDevices, 0) == npusimSuccess);
  for (int i = 0; i < iterations; ++i) {
    npusimEvent_t e = shared_events[rng.next(kSharedEvents)];
    npusimStream_t s = nullptr;
    switch (rng.next(3)) {
      case 0: s = own; break;
      case 1: CHECK(npusimStreamGetDefault(&s, static_cast<int>(rng.next(kDevices))) == npusimSuccess); break;
      default: s = nullptr; break;  // the current device's default stream
    }
    CHECK(npusimEventRecord(e, s) == npusimSuccess);
  }
  CHECK(npusimStreamDestroy(own) == npusimSuccess);
}

void event_reader(int id, int iterations) {
  Rng rng(300 + id);
  for (int i = 0; i < iterations; ++i) {
    npusimEvent_t a = shared_events[rng.next(kSharedEvents)];
    npusimEvent_t b = shared_events[rng.next(kSharedEvents)];
    CHECK(npusimEventQuery(a) == npusimSuccess);
    CHECK(npusimEventSynchronize(b) == npusimSuccess);
    CHECK(npusimStreamWaitEvent(nullptr, a) == npusimSuccess);
    float ms = 0;
    npusimError_t err = npusimEventElapsedTime(&ms, a, b);
    CHECK(err == npusimSuccess || err == npusimErrorEventNotRecorded);
    int device = -2;
    CHECK(npusimEventGetDevice(a, &device) == npusimSuccess && device >= -1 && device < kDevices);
  }
}

// Allocates, fills, copies and frees on every device; at most 4 x 32 KiB live per
// thread and device, far below capacity, so out-of-memory is always a bug here.
void memory_worker(int id, int iterations) {
  Rng rng(400 + id);
  std::vector<void*> live[kDevices];
  std::vector<unsigned char> host(32 * 1024);
  for (int i = 0; i < iterations; ++i) {
    int device = static_cast<int>(rng.next(kDevices));
    CHECK(npusimSetDevice(device) == npusimSuccess);
    auto& mine = live[device];
    if (mine.size() == 4) {
      CHECK(npusimFree(mine.front()) == npusimSuccess);
      mine.erase(mine.begin());
    }
    size_t size = 1 + rng.next(32 * 1024);
    void* p = nullptr;
    npusimError_t err = npusimMalloc(&p, size);
    CHECK(err == npusimSuccess && p != nullptr);
    if (err != npusimSuccess) continue;
    mine.push_back(p);
    unsigned char value = static_cast<unsigned char>(id * 16 + i);
    CHECK(npusimMemsetAsync(p, value, size, nullptr) == npusimSuccess);
    CHECK(npusimMemcpy(host.data(), p, size, npusimMemcpyDeviceToHost) == npusimSuccess);
    CHECK(host[0] == value && host[size - 1] == value);  // nobody else wrote our block
    npusimPointerAttributes attr;
    CHECK(npusimPointerGetAttributes(&attr, static_cast<char*>(p) + size - 1) == npusimSuccess);
    CHECK(attr.type == npusimMemoryTypeDevice && attr.device == device && attr.base == p && attr.size == size);
    size_t free_bytes = 0, total = 0;
    CHECK(npusimMemGetInfo(&free_bytes, &total) == npusimSuccess && total == kCapacity && free_bytes <= total);
    if (i % 8 == 0) {
      void* h = nullptr;
      CHECK(npusimHostAlloc(&h, 4096) == npusimSuccess);
      CHECK(npusimMemcpy(h, p, 1, npusimMemcpyDeviceToHost) == npusimSuccess);
      CHECK(npusimFreeHost(h) == npusimSuccess);
    }
  }
  for (int d = 0; d < kDevices; ++d)
    for (void* p : live[d]) CHECK(npusimFree(p) == npusimSuccess);
}

// Requests that can never fit: refused, and never visible to the other allocators.
void impossible_allocations(std::atomic<bool>* stop) {
  int i = 0;
  while (!stop->load()) {
    CHECK(npusimSetDevice(i % kDevices) == npusimSuccess);
    void* p = reinterpret_cast<void*>(1);
    size_t size = (i & 1) ? kCapacity + 1 : SIZE_MAX - 63;
    CHECK(npusimMalloc(&p, size) == npusimErrorMemoryAllocation && p == nullptr);
    ++i;
  }
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = argc > 1 ? std::atoi(argv[1]) : 2000;
  CHECK(npusimStreamCreateWithPriority(&shared_stream, 0, 0) == npusimSuccess);
  for (auto& e : shared_events) CHECK(npusimEventCreateWithFlags(&e, npusimEventDefault) == npusimSuccess);

  std::atomic<bool> stop{false};
  std::thread hog(impossible_allocations, &stop);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) threads.emplace_back(stream_churn, i, iterations / 2);
  for (int i = 0; i < 2; ++i) threads.emplace_back(default_stream_user, i, iterations);
  for (int i = 0; i < 2; ++i) threads.emplace_back(event_recorder, i, iterations);
  for (int i = 0; i < 2; ++i) threads.emplace_back(event_reader, i, iterations);
  for (int i = 0; i < 3; ++i) threads.emplace_back(memory_worker, i, iterations);
  for (auto& t : threads) t.join();
  stop = true;
  hog.join();

  uint64_t launches = 0;
  CHECK(npusimStreamGetLaunchCount(shared_stream, &launches) == npusimSuccess);
  CHECK(launches == shared_launches.load());  // no launch lost to a race
  CHECK(npusimStreamDestroy(shared_stream) == npusimSuccess);
  for (auto e : shared_events) CHECK(npusimEventDestroy(e) == npusimSuccess);
  for (int d = 0; d < kDevices; ++d) {  // every byte came back
    size_t free_bytes = 0, total = 0;
    CHECK(npusimSetDevice(d) == npusimSuccess);
    CHECK(npusimMemGetInfo(&free_bytes, &total) == npusimSuccess && free_bytes == total);
  }
  std::printf("%s (%d iterations)\n", failures ? "runtime stress FAILED" : "runtime stress passed", iterations);
  return failures ? 1 : 0;
}
