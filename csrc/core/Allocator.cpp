// The npusim allocators as c10 sees them: the caching DeviceAllocator (over the block
// caches of BlockCache.cpp) and the CPU-allocator router. Pinned host memory: HostAllocator.cpp.
#include "core/Allocator.h"

#include <algorithm>
#include <cstring>
#include <mutex>

#include <c10/core/CPUAllocator.h>
#include <c10/util/irange.h>

#include "core/BlockCache.h"
#include "core/Runtime.h"
#include "core/Stream.h"

namespace torch_npu_sim {

using c10::CachingDeviceAllocator::DeviceStats;

namespace {

// ---- CPU allocator router -------------------------------------------------------------

thread_local c10::DeviceIndex tls_fallback_device = -1;

class CpuAllocatorRouter final : public c10::Allocator {
 public:
  explicit CpuAllocatorRouter(c10::Allocator* cpu) : cpu_(cpu) {}

  c10::DataPtr allocate(size_t nbytes) override {
    if (tls_fallback_device < 0) return cpu_->allocate(nbytes);
    c10::DataPtr ptr = cache().allocate(tls_fallback_device, nbytes);
    ptr.unsafe_set_device(c10::Device(c10::kCPU));  // a CPU kernel holds it for now
    return ptr;
  }
  c10::DeleterFnPtr raw_deleter() const override { return &route_free; }
  void copy_data(void* dst, const void* src, std::size_t count) const override {
    std::memcpy(dst, src, count);
  }

 private:
  static void route_free(void* ptr) {
    if (cache().owns(ptr)) cache().free(ptr);
    else original()->raw_deleter()(ptr);
  }
  static c10::Allocator*& original() {
    static c10::Allocator* cpu = nullptr;
    return cpu;
  }
  friend void torch_npu_sim::install_cpu_allocator_router();
  c10::Allocator* cpu_;
};

}  // namespace

// ---- CachingAllocator -----------------------------------------------------------------

c10::DataPtr CachingAllocator::allocate(size_t nbytes) {
  return cache().allocate(static_cast<c10::DeviceIndex>(current_device()), nbytes);
}
c10::DataPtr CachingAllocator::allocate_on(c10::DeviceIndex device, size_t nbytes) {
  return cache().allocate(device, nbytes);
}
c10::DeleterFnPtr CachingAllocator::raw_deleter() const { return &Cache::raw_free; }
void CachingAllocator::copy_data(void* dst, const void* src, std::size_t count) const {
  NPUSIM_CHECK(npusimMemcpy(dst, src, count, npusimMemcpyDeviceToDevice));
}
void CachingAllocator::emptyCache(c10::MempoolId_t) { cache().empty_cache(); }
void CachingAllocator::recordStream(const c10::DataPtr& ptr, c10::Stream stream) {
  if (ptr.get()) cache().record_stream(ptr.get(), stream);
}
DeviceStats CachingAllocator::getDeviceStats(c10::DeviceIndex device) { return cache().stats(device); }
void CachingAllocator::resetAccumulatedStats(c10::DeviceIndex device) { cache().reset_accumulated(device); }
void CachingAllocator::resetPeakStats(c10::DeviceIndex device) { cache().reset_peak(device); }
std::pair<size_t, size_t> CachingAllocator::getMemoryInfo(c10::DeviceIndex device) {
  check_device_index(device);
  int saved = current_device();
  NPUSIM_CHECK(npusimSetDevice(device));
  size_t free_bytes = 0, total = 0;
  npusimError_t err = npusimMemGetInfo(&free_bytes, &total);
  NPUSIM_CHECK(npusimSetDevice(saved));
  NPUSIM_CHECK(err);
  return {free_bytes, total};
}
bool CachingAllocator::owns(const c10::DataPtr& ptr) {
  return ptr.get_deleter() == &Cache::raw_free;
}

CachingAllocator& caching_allocator() {
  static CachingAllocator allocator;
  return allocator;
}

// Registered with c10 so that c10::GetAllocator(PrivateUse1) and torch.accelerator find it.
REGISTER_ALLOCATOR(c10::DeviceType::PrivateUse1, &caching_allocator())

void resize_storage_bytes(c10::StorageImpl* storage, size_t new_bytes) {
  TORCH_CHECK(storage->resizable(), "Trying to resize storage that is not resizable");
  size_t old_bytes = storage->nbytes();
  if (new_bytes == old_bytes) return;
  c10::DeviceIndex device = storage->device().index();
  if (device < 0) device = static_cast<c10::DeviceIndex>(current_device());
  c10::DataPtr fresh = caching_allocator().allocate_on(device, new_bytes);
  size_t keep = std::min(old_bytes, new_bytes);
  if (keep && storage->data())
    NPUSIM_CHECK(npusimMemcpy(fresh.get(), storage->data(), keep, npusimMemcpyDeviceToDevice));
  storage->set_data_ptr_noswap(std::move(fresh));
  storage->set_nbytes(new_bytes);
}

AllocateOnNpuSim::AllocateOnNpuSim(c10::DeviceIndex device) : saved_(tls_fallback_device) {
  tls_fallback_device = device;
}
AllocateOnNpuSim::~AllocateOnNpuSim() { tls_fallback_device = saved_; }

void install_cpu_allocator_router() {
  static std::once_flag once;
  std::call_once(once, [] {
    c10::Allocator* cpu = c10::GetCPUAllocator();
    CpuAllocatorRouter::original() = cpu;
    static CpuAllocatorRouter router(cpu);
    c10::SetCPUAllocator(&router, /*priority=*/1);
  });
}

}  // namespace torch_npu_sim
