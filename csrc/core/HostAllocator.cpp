// Pinned host memory: what `pin_memory=True` and `torch.accelerator.*host*` reach.
//
// It is registered both as the hooks' pinned-memory allocator and as at::HostAllocator for
// PrivateUse1, which torch.accelerator.empty_host_cache() and the host memory statistics
// look up (without the latter, torch dereferenced a null allocator).
//
// Nothing is cached: a block goes back to the runtime when its tensor dies. That is safe
// because an npusim copy from or to pinned memory has finished when copy_ returns (kernels
// run in stream order on the calling thread), so no stream can still be reading a freed
// block; record_event has nothing to wait for and empty_cache nothing to release.
#include <array>
#include <chrono>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include <ATen/core/CachingHostAllocator.h>

#include "core/Allocator.h"
#include "core/BlockCache.h"
#include "core/Runtime.h"

namespace torch_npu_sim {
namespace {

class PinnedHostAllocator final : public at::HostAllocator {
 public:
  c10::DataPtr allocate(size_t nbytes) override {
    void* ptr = nullptr;
    if (nbytes) {
      auto start = std::chrono::steady_clock::now();
      npusimError_t err = npusimHostAlloc(&ptr, nbytes);
      TORCH_CHECK_WITH(OutOfMemoryError, err == npusimSuccess,
                       "npusim: could not allocate ", format_size(nbytes), " of pinned host memory");
      std::lock_guard<std::mutex> lock(mutex_);
      sizes_[ptr] = nbytes;
      stats_.active_requests.increase(1);
      stats_.active_bytes.increase(nbytes);
      stats_.allocations.increase(1);
      stats_.allocated_bytes.increase(nbytes);
      stats_.num_host_alloc++;
      stats_.host_alloc_time.increase(micros_since(start));
    }
    return c10::DataPtr(ptr, ptr, &host_free, c10::Device(c10::kCPU));
  }
  c10::DeleterFnPtr raw_deleter() const override { return &host_free; }
  void copy_data(void* dst, const void* src, std::size_t count) const override {
    std::memcpy(dst, src, count);
  }

  bool record_event(void*, void*, c10::Stream) override { return true; }
  void empty_cache() override {}

  at::HostStats get_stats() override {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  void reset_accumulated_stats() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto* stat : counted_stats()) stat->reset_accumulated();
    stats_.host_alloc_time.reset_accumulated();
    stats_.host_free_time.reset_accumulated();
    stats_.num_host_alloc = stats_.num_host_free = 0;
  }
  void reset_peak_stats() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto* stat : counted_stats()) stat->reset_peak();
    stats_.host_alloc_time.reset_peak();
    stats_.host_free_time.reset_peak();
  }

  static PinnedHostAllocator& instance() {
    static PinnedHostAllocator allocator;
    return allocator;
  }

 private:
  std::array<c10::CachingAllocator::Stat*, 4> counted_stats() {
    return {&stats_.active_requests, &stats_.active_bytes, &stats_.allocations, &stats_.allocated_bytes};
  }

  static int64_t micros_since(std::chrono::steady_clock::time_point start) {
    auto elapsed = std::chrono::steady_clock::now() - start;
    return std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
  }

  static void host_free(void* ptr) {
    if (!ptr) return;
    auto& self = instance();
    auto start = std::chrono::steady_clock::now();
    (void)npusimFreeHost(ptr);
    std::lock_guard<std::mutex> lock(self.mutex_);
    auto it = self.sizes_.find(ptr);
    if (it == self.sizes_.end()) return;
    self.stats_.active_requests.decrease(1);
    self.stats_.active_bytes.decrease(it->second);
    self.stats_.allocations.decrease(1);
    self.stats_.allocated_bytes.decrease(it->second);
    self.stats_.num_host_free++;
    self.stats_.host_free_time.increase(micros_since(start));
    self.sizes_.erase(it);
  }

  std::mutex mutex_;
  std::unordered_map<void*, size_t> sizes_;
  at::HostStats stats_;
};

}  // namespace

c10::Allocator* host_allocator() { return &PinnedHostAllocator::instance(); }

bool is_pinned_ptr(const void* ptr) {
  npusimPointerAttributes attr;
  return npusimPointerGetAttributes(&attr, ptr) == npusimSuccess && attr.type == npusimMemoryTypeHost;
}

REGISTER_HOST_ALLOCATOR(c10::DeviceType::PrivateUse1, &PinnedHostAllocator::instance())

}  // namespace torch_npu_sim
