// The caching allocator's per-device block caches (BlockCache.cpp), used by the c10
// allocators of Allocator.cpp.
#pragma once

#include <string>

#include <c10/core/CachingDeviceAllocator.h>
#include <c10/core/Stream.h>

namespace torch_npu_sim {

class Cache {
 public:
  c10::DataPtr allocate(c10::DeviceIndex device, size_t nbytes);
  void free(void* ptr) noexcept;  // errors are reported as warnings: it runs in destructors
  bool owns(void* ptr);           // a live block of this cache?
  void record_stream(void* ptr, const c10::Stream& stream);
  void empty_cache();
  c10::CachingDeviceAllocator::DeviceStats stats(c10::DeviceIndex device);
  void reset_accumulated(c10::DeviceIndex device);
  void reset_peak(c10::DeviceIndex device);
  static void raw_free(void* ptr);  // the deleter of every block
};

Cache& cache();

std::string format_size(size_t bytes);  // "1.50 MiB"

}  // namespace torch_npu_sim
