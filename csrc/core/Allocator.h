// The npusim caching allocator (a c10::DeviceAllocator) and the CPU-allocator router that
// lets CPU kernels run by the zero-copy fallback allocate their outputs in npusim memory.
#pragma once

#include <c10/core/CachingDeviceAllocator.h>
#include <c10/core/StorageImpl.h>

namespace torch_npu_sim {

class CachingAllocator : public c10::DeviceAllocator {
 public:
  c10::DataPtr allocate(size_t nbytes) override;  // on the current device
  c10::DataPtr allocate_on(c10::DeviceIndex device, size_t nbytes);
  c10::DeleterFnPtr raw_deleter() const override;
  void copy_data(void* dst, const void* src, std::size_t count) const override;

  bool initialized() override { return true; }
  void emptyCache(c10::MempoolId_t mempool_id = {0, 0}) override;
  void recordStream(const c10::DataPtr& ptr, c10::Stream stream) override;
  c10::CachingDeviceAllocator::DeviceStats getDeviceStats(c10::DeviceIndex device) override;
  void resetAccumulatedStats(c10::DeviceIndex device) override;
  void resetPeakStats(c10::DeviceIndex device) override;
  std::pair<size_t, size_t> getMemoryInfo(c10::DeviceIndex device) override;

  // Is this DataPtr a live block of this allocator?
  static bool owns(const c10::DataPtr& ptr);
};

CachingAllocator& caching_allocator();

// Grow or shrink a storage's bytes in place (resize_, untyped_storage().resize_(), FSDP2).
void resize_storage_bytes(c10::StorageImpl* storage, size_t new_bytes);

// While alive, CPU allocations on this thread come from npusim device `device`
// (see the fallback): the CPU kernel's outputs already live in npusim memory.
class AllocateOnNpuSim {
 public:
  explicit AllocateOnNpuSim(c10::DeviceIndex device);
  ~AllocateOnNpuSim();
  AllocateOnNpuSim(const AllocateOnNpuSim&) = delete;
  AllocateOnNpuSim& operator=(const AllocateOnNpuSim&) = delete;

 private:
  c10::DeviceIndex saved_;
};

// Installs the router as the process's CPU allocator (once).
void install_cpu_allocator_router();

c10::Allocator* host_allocator();  // pinned host memory
bool is_pinned_ptr(const void* ptr);

}  // namespace torch_npu_sim
