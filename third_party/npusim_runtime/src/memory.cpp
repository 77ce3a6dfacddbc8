// Memory: capacity-limited device allocations, pinned host allocations, and the
// registry that answers "what is this pointer?".
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "protect.h"
#include "runtime_internal.h"

namespace npusim_rt {
namespace {

struct Allocation {
  size_t size;
  int device;  // -1 for pinned host memory
};

constexpr size_t kAlignment = 64;

std::mutex& registry_mutex() {
  static auto* m = new std::mutex();
  return *m;
}
std::map<uintptr_t, Allocation>& registry() {
  static auto* r = new std::map<uintptr_t, Allocation>();
  return *r;
}

npusimError_t allocate(void** ptr, size_t size, int device) {
  if (!ptr) return npusimErrorInvalidValue;
  *ptr = nullptr;
  if (size == 0) return npusimSuccess;
  if (device >= 0) {
    // Reserve capacity first so concurrent allocations can't overshoot it. A CAS loop,
    // not add-then-undo: a failing request must never make `used` look larger (another
    // thread would see a spurious out-of-memory) nor wrap it around (an overshoot).
    auto& state = runtime().devices[device];
    size_t used = state.used.load();
    do {
      if (size > state.capacity - used) return npusimErrorMemoryAllocation;
    } while (!state.used.compare_exchange_weak(used, used + size));
  }
  void* p = nullptr;
  // large blocks come from mmap inside malloc: pages are committed on first touch;
  // protected device memory is its own mapping, so that it can be made inaccessible
  bool is_protected = device >= 0 && protect_enabled();
  if (is_protected) p = protected_alloc(size, device);
  if (is_protected ? p == nullptr : posix_memalign(&p, kAlignment, size) != 0) {
    if (device >= 0) runtime().devices[device].used.fetch_sub(size);
    return npusimErrorMemoryAllocation;
  }
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    registry()[reinterpret_cast<uintptr_t>(p)] = Allocation{size, device};
  }
  *ptr = p;
  return npusimSuccess;
}

npusimError_t release(void* ptr, bool device_memory) {
  if (!ptr) return npusimSuccess;
  Allocation alloc;
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    auto it = registry().find(reinterpret_cast<uintptr_t>(ptr));
    if (it == registry().end() || (it->second.device >= 0) != device_memory)
      return npusimErrorInvalidDevicePointer;
    alloc = it->second;
    registry().erase(it);
  }
  if (alloc.device >= 0 && protect_enabled()) protected_free(ptr);
  else std::free(ptr);
  if (alloc.device >= 0) runtime().devices[alloc.device].used.fetch_sub(alloc.size);
  return npusimSuccess;
}

}  // namespace
}  // namespace npusim_rt

using namespace npusim_rt;

extern "C" {

npusimError_t npusimMalloc(void** ptr, size_t size) {
  NPUSIM_RT_CHECK_INIT();
  if (!valid_device(current_device())) return npusimErrorInvalidDevice;
  return allocate(ptr, size, current_device());
}

npusimError_t npusimFree(void* ptr) { return release(ptr, /*device_memory=*/true); }

npusimError_t npusimHostAlloc(void** ptr, size_t size) { return allocate(ptr, size, -1); }

npusimError_t npusimFreeHost(void* ptr) { return release(ptr, /*device_memory=*/false); }

npusimError_t npusimMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (!free_bytes || !total_bytes) return npusimErrorInvalidValue;
  NPUSIM_RT_CHECK_INIT();
  if (!valid_device(current_device())) return npusimErrorInvalidDevice;
  const auto& state = runtime().devices[current_device()];
  size_t used = state.used.load();
  *total_bytes = state.capacity;
  *free_bytes = used >= state.capacity ? 0 : state.capacity - used;
  return npusimSuccess;
}

npusimError_t npusimPointerGetAttributes(npusimPointerAttributes* attr, const void* ptr) {
  if (!attr) return npusimErrorInvalidValue;
  *attr = npusimPointerAttributes{npusimMemoryTypeUnregistered, -1, nullptr, 0};
  if (!ptr) return npusimSuccess;
  auto key = reinterpret_cast<uintptr_t>(ptr);
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto it = registry().upper_bound(key);
  if (it == registry().begin()) return npusimSuccess;
  --it;
  if (key >= it->first + it->second.size) return npusimSuccess;
  attr->type = it->second.device >= 0 ? npusimMemoryTypeDevice : npusimMemoryTypeHost;
  attr->device = it->second.device;
  attr->base = reinterpret_cast<void*>(it->first);
  attr->size = it->second.size;
  return npusimSuccess;
}

}  // extern "C"
