#include "core/Stream.h"

#include <array>
#include <atomic>
#include <mutex>
#include <vector>

#include "core/Runtime.h"

namespace torch_npu_sim {
namespace {

constexpr int kStreamsPerPool = 32;
constexpr int kPriorityLevels = 2;  // 0: normal, 1: high (runtime priority -1)
constexpr int kMaxDevices = 64;

struct DevicePools {
  std::once_flag once;
  npusimStream_t default_stream = nullptr;
  std::array<std::array<npusimStream_t, kStreamsPerPool>, kPriorityLevels> pools{};
  std::array<std::atomic<uint32_t>, kPriorityLevels> next{};
};

DevicePools& pools_for(c10::DeviceIndex device) {
  static std::array<DevicePools, kMaxDevices> all;
  check_device_index(device);
  auto& p = all[device];
  std::call_once(p.once, [&] {
    NPUSIM_CHECK(npusimStreamGetDefault(&p.default_stream, device));
    for (int level = 0; level < kPriorityLevels; ++level)
      for (auto& s : p.pools[level])
        NPUSIM_CHECK(npusimStreamCreateWithPriority(&s, device, -level));
  });
  return p;
}

std::array<c10::StreamId, kMaxDevices>& current_ids() {
  thread_local std::array<c10::StreamId, kMaxDevices> ids{};  // all default streams
  return ids;
}

c10::DeviceIndex resolve(c10::DeviceIndex device) {
  return device < 0 ? static_cast<c10::DeviceIndex>(current_device()) : device;
}

}  // namespace

c10::Stream default_stream(c10::DeviceIndex device) {
  device = resolve(device);
  check_device_index(device);
  return c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::PrivateUse1, device), 0);
}

c10::Stream stream_from_pool(c10::DeviceIndex device, int priority) {
  device = resolve(device);
  auto& p = pools_for(device);
  int level = priority < 0 ? 1 : 0;  // lower number = higher priority, as in CUDA
  uint32_t index = p.next[level].fetch_add(1) % kStreamsPerPool;
  c10::StreamId id = 1 + level * kStreamsPerPool + index;
  return c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::PrivateUse1, device), id);
}

c10::Stream current_stream(c10::DeviceIndex device) {
  device = resolve(device);
  check_device_index(device);
  return c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::PrivateUse1, device),
                     current_ids()[device]);
}

void set_current_stream(const c10::Stream& stream) {
  runtime_stream(stream);  // validates
  current_ids()[stream.device_index()] = stream.id();
}

npusimStream_t runtime_stream(const c10::Stream& stream) {
  TORCH_CHECK(stream.device_type() == c10::DeviceType::PrivateUse1,
              "Expected an npusim stream, but got a stream on ", stream.device());
  auto& p = pools_for(stream.device_index());
  c10::StreamId id = stream.id();
  if (id == 0) return p.default_stream;
  TORCH_CHECK(id > 0 && id <= kPriorityLevels * kStreamsPerPool, "Invalid npusim stream id ", id,
              " on ", stream.device(), ": not a stream created by torch_npu_sim");
  return p.pools[(id - 1) / kStreamsPerPool][(id - 1) % kStreamsPerPool];
}

int stream_priority(const c10::Stream& stream) {
  int priority = 0;
  NPUSIM_CHECK(npusimStreamGetPriority(runtime_stream(stream), &priority));
  return priority;
}

uint64_t launch_count(c10::DeviceIndex device) {
  auto& p = pools_for(resolve(device));
  uint64_t total = 0, count = 0;
  NPUSIM_CHECK(npusimStreamGetLaunchCount(p.default_stream, &count));
  total += count;
  for (auto& pool : p.pools)
    for (auto s : pool) {
      NPUSIM_CHECK(npusimStreamGetLaunchCount(s, &count));
      total += count;
    }
  return total;
}

}  // namespace torch_npu_sim
