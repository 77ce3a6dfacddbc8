// Memory: capacity-limited device allocations, pinned host allocations, and the
// registry that answers "what is this pointer?". Large device allocations are their own
// page-aligned mappings; shareable ones are mappings of a memfd from birth (ipc.cpp opens
// them in peers), so sharing never copies memory a program may be writing.
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "memory_internal.h"
#include "protect.h"
#include "runtime_internal.h"

namespace npusim_rt {
namespace {

struct Allocation {
  size_t size;
  int device;             // -1 for pinned host memory
  size_t mapped = 0;      // bytes of its own mapping (0: from the heap)
  int shared_fd = -1;     // memfd behind it once shared
  uint64_t serial = 0;    // names it in IPC handles (unique in this process)
  bool discarded = false; // its capacity given back and its pages dropped (npusimMemDiscard)
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
uint64_t next_serial = 1;
size_t shared_count = 0;  // allocations holding a memfd (guarded by the registry mutex)

size_t page_size() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

// Shared allocations each hold a file descriptor: leave most of the process's limit to others.
size_t max_shared() {
  static const size_t limit = [] {
    rlimit r{};
    if (getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return size_t(4096);
    return std::min<size_t>(4096, r.rlim_cur / 4);
  }();
  return limit;
}

// A forked child must neither write into its parent's device memory nor see the parent's
// later writes: its view of each shareable allocation becomes a private anonymous copy of
// the contents at the fork (a private mapping of the memfd would still show the parent's
// writes to pages the child has not touched). Where a copy cannot be made, the range is
// made inaccessible, so a use faults instead of reading memory that changes.
void snapshot_in_child(uintptr_t base, Allocation& a) {
  void* copy = mmap(nullptr, a.mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  bool ok = copy != MAP_FAILED;
  if (ok) {
    std::memcpy(copy, reinterpret_cast<void*>(base), a.size);
    ok = mremap(copy, a.mapped, a.mapped, MREMAP_MAYMOVE | MREMAP_FIXED, reinterpret_cast<void*>(base)) != MAP_FAILED;
    if (!ok) munmap(copy, a.mapped);
  }
  if (!ok) {
    mprotect(reinterpret_cast<void*>(base), a.mapped, PROT_NONE);
    static const char msg[] = "npusim: a forked child could not copy a shared device allocation; it is inaccessible\n";
    (void)!write(2, msg, sizeof msg - 1);
  }
  close(a.shared_fd);
  a.shared_fd = -1;
}
// The parent waits until the child has taken its copies: the child copies after the fork,
// and a parent already running on would write into the very pages being copied. Closing
// the pipe is the signal, so a child that dies mid-copy releases the parent too.
int snapshot_done[2] = {-1, -1};
void before_fork() {
  registry_mutex().lock();
  if (shared_count == 0 || pipe2(snapshot_done, O_CLOEXEC) != 0) snapshot_done[0] = snapshot_done[1] = -1;
}
void after_fork_parent() {
  if (snapshot_done[0] >= 0) {
    close(snapshot_done[1]);
    char c;
    while (read(snapshot_done[0], &c, 1) < 0 && errno == EINTR) {
    }
    close(snapshot_done[0]);
  }
  registry_mutex().unlock();
}
void after_fork_child() {
  for (auto& [base, a] : registry())
    if (a.shared_fd >= 0) snapshot_in_child(base, a);
  shared_count = 0;
  if (snapshot_done[0] >= 0) {
    close(snapshot_done[0]);
    close(snapshot_done[1]);
  }
  registry_mutex().unlock();
}
[[maybe_unused]] const bool fork_handlers_installed = pthread_atfork(before_fork, after_fork_parent, after_fork_child) == 0;

void* map_anonymous(size_t bytes) {
  // cost-only: nothing is ever written, so the mapping need not count against the host's memory
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | (npusimCostOnly() ? MAP_NORESERVE : 0);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

// A memfd of `mapped` bytes mapped shared; -1 (and nullptr) when that fails.
int map_shareable(size_t mapped, void** out) {
  *out = nullptr;
  int fd = memfd_create("npusim-device-memory", MFD_CLOEXEC);
  if (fd < 0) return -1;
  void* p = MAP_FAILED;
  if (ftruncate(fd, static_cast<off_t>(mapped)) == 0) p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    close(fd);
    return -1;
  }
  *out = p;
  return fd;
}

npusimError_t allocate(void** ptr, size_t size, int device, bool shareable = false) {
  if (!ptr) return npusimErrorInvalidValue;
  *ptr = nullptr;
  if (size == 0) return npusimSuccess;
  if (shareable && (device < 0 || size < NPUSIM_IPC_MIN_BYTES || protect_enabled())) return npusimErrorNotSupported;
  if (shareable) {
    // a descriptor budget, reserved before the capacity so a refusal changes nothing
    std::lock_guard<std::mutex> lock(registry_mutex());
    if (shared_count >= max_shared()) return npusimErrorNotSupported;
    ++shared_count;
  }
  auto unreserve_descriptor = [&] {
    if (!shareable) return;
    std::lock_guard<std::mutex> lock(registry_mutex());
    --shared_count;
  };
  if (device >= 0) {
    // Reserve capacity first so concurrent allocations can't overshoot it. A CAS loop,
    // not add-then-undo: a failing request must never make `used` look larger (another
    // thread would see a spurious out-of-memory) nor wrap it around (an overshoot).
    auto& state = runtime().devices[device];
    size_t used = state.used.load();
    do {
      if (size > state.capacity - used) {
        unreserve_descriptor();
        return npusimErrorMemoryAllocation;
      }
    } while (!state.used.compare_exchange_weak(used, used + size));
  }
  void* p = nullptr;
  size_t mapped = 0;
  int fd = -1;
  // protected device memory is its own mapping, so that it can be made inaccessible;
  // large device memory too, so that it can be shared in place; pages are committed on first touch
  bool is_protected = device >= 0 && protect_enabled();
  bool ok;
  if (is_protected) {
    ok = (p = protected_alloc(size, device)) != nullptr;
  } else if (shareable) {
    mapped = (size + page_size() - 1) / page_size() * page_size();
    ok = (fd = map_shareable(mapped, &p)) >= 0;
  } else if (device >= 0 && size >= NPUSIM_IPC_MIN_BYTES) {
    mapped = (size + page_size() - 1) / page_size() * page_size();
    ok = (p = map_anonymous(mapped)) != nullptr;
  } else {
    ok = posix_memalign(&p, kAlignment, size) == 0;
  }
  if (!ok) {
    if (device >= 0) runtime().devices[device].used.fetch_sub(size);
    unreserve_descriptor();
    return shareable ? npusimErrorNotSupported : npusimErrorMemoryAllocation;
  }
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    registry()[reinterpret_cast<uintptr_t>(p)] = Allocation{size, device, mapped, fd, next_serial++};
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
    if (alloc.shared_fd >= 0) --shared_count;
  }
  if (alloc.device >= 0 && protect_enabled()) {
    protected_free(ptr);
  } else if (alloc.mapped) {
    munmap(ptr, alloc.mapped);  // peers' mappings keep the shared pages alive until they let go
    if (alloc.shared_fd >= 0) close(alloc.shared_fd);
  } else {
    std::free(ptr);
  }
  if (alloc.device >= 0 && !alloc.discarded) runtime().devices[alloc.device].used.fetch_sub(alloc.size);
  return npusimSuccess;
}

// Drops the pages of a device allocation (the range stays mapped: it reads as zeros later).
void drop_pages(void* ptr, const Allocation& a) {
  size_t pages = (a.size + page_size() - 1) / page_size() * page_size();
  if (a.shared_fd >= 0) {
    madvise(ptr, a.mapped, MADV_REMOVE);  // the memfd's pages themselves (peers then read zeros)
  } else if (a.mapped || protect_enabled()) {
    madvise(ptr, a.mapped ? a.mapped : pages, MADV_DONTNEED);
  }
  // heap memory (small blocks) keeps its pages; npusimMemRecommit zeroes it
}

npusimError_t set_discarded(void* ptr, bool discard) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto it = registry().find(reinterpret_cast<uintptr_t>(ptr));
  if (it == registry().end() || it->second.device < 0) return npusimErrorInvalidDevicePointer;
  Allocation& a = it->second;
  if (a.discarded == discard) return npusimSuccess;
  auto& state = runtime().devices[a.device];
  if (discard) {
    drop_pages(ptr, a);
    state.used.fetch_sub(a.size);
  } else {
    size_t used = state.used.load();
    do {
      if (a.size > state.capacity - used) return npusimErrorMemoryAllocation;
    } while (!state.used.compare_exchange_weak(used, used + a.size));
    if (!a.mapped && !protect_enabled()) std::memset(ptr, 0, a.size);
  }
  a.discarded = discard;
  return npusimSuccess;
}

}  // namespace

npusimError_t share_device_allocation(const void* ptr, SharedAllocation* out) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto key = reinterpret_cast<uintptr_t>(ptr);
  auto it = registry().upper_bound(key);
  if (it == registry().begin()) return npusimErrorInvalidDevicePointer;
  --it;
  Allocation& a = it->second;
  if (key >= it->first + a.size || a.device < 0) return npusimErrorInvalidDevicePointer;
  if (a.shared_fd < 0) return npusimErrorNotSupported;  // not made shareable at allocation
  *out = SharedAllocation{reinterpret_cast<void*>(it->first), a.size, a.mapped, a.shared_fd, a.serial};
  return npusimSuccess;
}

}  // namespace npusim_rt

using namespace npusim_rt;

extern "C" {

npusimError_t npusimMalloc(void** ptr, size_t size) {
  NPUSIM_RT_CHECK_INIT();
  if (!valid_device(current_device())) return npusimErrorInvalidDevice;
  return allocate(ptr, size, current_device());
}

npusimError_t npusimMallocWithFlags(void** ptr, size_t size, unsigned int flags) {
  NPUSIM_RT_CHECK_INIT();
  if (!valid_device(current_device())) return npusimErrorInvalidDevice;
  if (flags & ~npusimMemShareable) return npusimErrorInvalidValue;
  return allocate(ptr, size, current_device(), (flags & npusimMemShareable) != 0);
}

npusimError_t npusimFree(void* ptr) { return release(ptr, /*device_memory=*/true); }

npusimError_t npusimMemDiscard(void* ptr) { return set_discarded(ptr, true); }
npusimError_t npusimMemRecommit(void* ptr) { return set_discarded(ptr, false); }

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
