// Caching allocator: blocks are cached per device and per allocating stream, so freeing
// and reallocating a tensor costs no runtime call; a block used on other streams
// (record_stream) is reused only once events on those streams have completed.
#include "core/Allocator.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <c10/core/CPUAllocator.h>
#include <c10/util/irange.h>

#include "core/Runtime.h"
#include "core/Stream.h"

namespace torch_npu_sim {
namespace {

using c10::CachingAllocator::Stat;
using c10::CachingAllocator::StatType;
using c10::CachingDeviceAllocator::DeviceStats;

constexpr size_t kMinBlock = 512;
constexpr size_t kSmallLimit = size_t(1) << 20;  // blocks up to 1 MiB form the small pool
constexpr int kMaxDevices = 64;

struct Block {
  c10::DeviceIndex device;
  npusimStream_t stream;  // stream it was allocated on
  size_t size;            // rounded size reserved for it
  size_t requested;
  void* ptr;
  std::vector<c10::Stream> stream_uses;  // other streams (record_stream)
};

struct BlockOrder {
  bool operator()(const Block* a, const Block* b) const {
    if (a->stream != b->stream) return a->stream < b->stream;
    if (a->size != b->size) return a->size < b->size;
    return a->ptr < b->ptr;
  }
};

struct PendingFree {
  Block* block;
  std::vector<npusimEvent_t> events;
};

struct DeviceCache {
  std::set<Block*, BlockOrder> free_blocks;
  std::vector<PendingFree> pending;  // freed but possibly still in use on other streams
  DeviceStats stats;
};

size_t round_size(size_t n) { return n < kMinBlock ? kMinBlock : (n + kMinBlock - 1) / kMinBlock * kMinBlock; }
StatType pool_of(size_t size) { return size <= kSmallLimit ? StatType::SMALL_POOL : StatType::LARGE_POOL; }

void update(c10::CachingAllocator::StatArray& stat, size_t size, int64_t delta) {
  for (auto type : {StatType::AGGREGATE, pool_of(size)}) {
    auto& s = stat[static_cast<size_t>(type)];
    if (delta > 0) s.increase(static_cast<size_t>(delta));
    else s.decrease(static_cast<size_t>(-delta));
  }
}

std::string format_size(size_t bytes) {
  char buf[64];
  if (bytes < (size_t(1) << 20)) snprintf(buf, sizeof(buf), "%.2f KiB", bytes / 1024.0);
  else if (bytes < (size_t(1) << 30)) snprintf(buf, sizeof(buf), "%.2f MiB", bytes / 1048576.0);
  else snprintf(buf, sizeof(buf), "%.2f GiB", bytes / 1073741824.0);
  return buf;
}

class Cache {
 public:
  c10::DataPtr allocate(c10::DeviceIndex device, size_t nbytes) {
    c10::Device dev(c10::DeviceType::PrivateUse1, device);
    if (nbytes == 0) return c10::DataPtr(nullptr, dev);
    npusimStream_t stream = runtime_stream(current_stream(device));
    size_t size = round_size(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    auto& cache = caches_[device];
    process_pending(cache);
    Block* block = take_cached(cache, stream, size);
    if (!block) block = allocate_segment(device, cache, stream, size, nbytes);
    block->requested = nbytes;
    active_.emplace(block->ptr, block);
    update(cache.stats.allocation, block->size, 1);
    update(cache.stats.allocated_bytes, block->size, static_cast<int64_t>(block->size));
    update(cache.stats.active, block->size, 1);
    update(cache.stats.active_bytes, block->size, static_cast<int64_t>(block->size));
    update(cache.stats.requested_bytes, block->size, static_cast<int64_t>(nbytes));
    return c10::DataPtr(block->ptr, block->ptr, &Cache::raw_free, dev);
  }

  void free(void* ptr) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = active_.find(ptr);
    TORCH_INTERNAL_ASSERT(it != active_.end(), "npusim allocator: freeing an unknown pointer ", ptr);
    Block* block = it->second;
    active_.erase(it);
    auto& cache = caches_[block->device];
    update(cache.stats.allocation, block->size, -1);
    update(cache.stats.allocated_bytes, block->size, -static_cast<int64_t>(block->size));
    update(cache.stats.requested_bytes, block->size, -static_cast<int64_t>(block->requested));
    if (block->stream_uses.empty()) {
      release_to_cache(cache, block);
      return;
    }
    PendingFree pending{block, {}};
    for (const auto& s : block->stream_uses) {
      npusimEvent_t event = nullptr;
      NPUSIM_CHECK(npusimEventCreateWithFlags(&event, npusimEventDisableTiming));
      NPUSIM_CHECK(npusimEventRecord(event, runtime_stream(s)));
      pending.events.push_back(event);
    }
    block->stream_uses.clear();
    cache.pending.push_back(std::move(pending));
  }

  bool owns(void* ptr) {
    std::lock_guard<std::mutex> lock(mutex_);
    return active_.count(ptr) != 0;
  }

  void record_stream(void* ptr, const c10::Stream& stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = active_.find(ptr);
    TORCH_CHECK(it != active_.end(), "record_stream: the tensor's memory was not allocated by npusim");
    Block* block = it->second;
    if (runtime_stream(stream) == block->stream) return;
    auto& uses = block->stream_uses;
    if (std::find(uses.begin(), uses.end(), stream) == uses.end()) uses.push_back(stream);
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& cache : caches_) {
      process_pending(cache);
      release_cached(cache);
    }
  }

  DeviceStats stats(c10::DeviceIndex device) {
    std::lock_guard<std::mutex> lock(mutex_);
    return caches_.at(checked(device)).stats;
  }

  template <typename F>
  void for_each_stat(c10::DeviceIndex device, F f) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& s = caches_.at(checked(device)).stats;
    for (auto* array : {&s.allocation, &s.segment, &s.active, &s.inactive_split, &s.allocated_bytes,
                        &s.reserved_bytes, &s.active_bytes, &s.inactive_split_bytes, &s.requested_bytes})
      for (auto& stat : *array) f(stat);
    f(s.oversize_allocations);
    f(s.oversize_segments);
  }

  void reset_accumulated(c10::DeviceIndex device) {
    for_each_stat(device, [](Stat& s) { s.reset_accumulated(); });
    std::lock_guard<std::mutex> lock(mutex_);
    auto& s = caches_.at(device).stats;
    s.num_alloc_retries = s.num_ooms = s.num_sync_all_streams = s.num_device_alloc = s.num_device_free = 0;
  }

  void reset_peak(c10::DeviceIndex device) {
    for_each_stat(device, [](Stat& s) { s.reset_peak(); });
  }

  static void raw_free(void* ptr);

 private:
  static c10::DeviceIndex checked(c10::DeviceIndex device) {
    if (device < 0) device = static_cast<c10::DeviceIndex>(current_device());
    check_device_index(device);
    return device;
  }

  // Best fit on the same stream; a small request takes only its own size class so the
  // cache never hands out much more than was asked for.
  Block* take_cached(DeviceCache& cache, npusimStream_t stream, size_t size) {
    Block key{0, stream, size, 0, nullptr, {}};
    auto it = cache.free_blocks.lower_bound(&key);
    if (it == cache.free_blocks.end() || (*it)->stream != stream) return nullptr;
    Block* block = *it;
    size_t slack = size <= kSmallLimit ? 0 : size / 8;
    if (block->size > size + slack) return nullptr;
    cache.free_blocks.erase(it);
    return block;
  }

  Block* allocate_segment(c10::DeviceIndex device, DeviceCache& cache, npusimStream_t stream,
                          size_t size, size_t requested) {
    void* ptr = nullptr;
    int saved = current_device();
    NPUSIM_CHECK(npusimSetDevice(device));
    npusimError_t err = npusimMalloc(&ptr, size);
    if (err == npusimErrorMemoryAllocation) {
      // give back what the cache holds, then try once more
      cache.stats.num_alloc_retries += 1;
      process_pending(cache);
      release_cached(cache);
      err = npusimMalloc(&ptr, size);
    }
    (void)npusimSetDevice(saved);
    if (err == npusimErrorMemoryAllocation) {
      cache.stats.num_ooms += 1;
      size_t free_bytes = 0, total = 0;
      (void)npusimSetDevice(device);
      (void)npusimMemGetInfo(&free_bytes, &total);
      (void)npusimSetDevice(saved);
      const auto& agg = [&](c10::CachingAllocator::StatArray& a) {
        return static_cast<size_t>(a[static_cast<size_t>(StatType::AGGREGATE)].current);
      };
      size_t allocated = agg(cache.stats.allocated_bytes), reserved = agg(cache.stats.reserved_bytes);
      TORCH_CHECK_WITH(OutOfMemoryError, false, "npusim out of memory. Tried to allocate ",
                       format_size(requested), ". npusim device ", static_cast<int>(device),
                       " has a total capacity of ", format_size(total), " of which ",
                       format_size(free_bytes), " is free. Of the allocated memory ",
                       format_size(allocated), " is allocated by PyTorch, and ",
                       format_size(reserved - std::min(reserved, allocated)),
                       " is reserved by PyTorch but unallocated. (Set NPUSIM_DEVICE_MEMORY "
                       "to change the simulated capacity.)");
    }
    NPUSIM_CHECK(err);
    cache.stats.num_device_alloc += 1;
    update(cache.stats.segment, size, 1);
    update(cache.stats.reserved_bytes, size, static_cast<int64_t>(size));
    return new Block{device, stream, size, requested, ptr, {}};
  }

  void release_to_cache(DeviceCache& cache, Block* block) {
    update(cache.stats.active, block->size, -1);
    update(cache.stats.active_bytes, block->size, -static_cast<int64_t>(block->size));
    cache.free_blocks.insert(block);
  }

  void process_pending(DeviceCache& cache) {
    if (cache.pending.empty()) return;
    std::vector<PendingFree> still_pending;
    for (auto& p : cache.pending) {
      bool done = std::all_of(p.events.begin(), p.events.end(),
                              [](npusimEvent_t e) { return npusimEventQuery(e) == npusimSuccess; });
      if (!done) {
        still_pending.push_back(std::move(p));
        continue;
      }
      for (auto e : p.events) (void)npusimEventDestroy(e);
      release_to_cache(cache, p.block);
    }
    cache.pending.swap(still_pending);
  }

  void release_cached(DeviceCache& cache) {
    for (Block* block : cache.free_blocks) {
      NPUSIM_CHECK(npusimFree(block->ptr));
      cache.stats.num_device_free += 1;
      update(cache.stats.segment, block->size, -1);
      update(cache.stats.reserved_bytes, block->size, -static_cast<int64_t>(block->size));
      delete block;
    }
    cache.free_blocks.clear();
  }

  std::mutex mutex_;
  std::unordered_map<void*, Block*> active_;
  std::array<DeviceCache, kMaxDevices> caches_;
};

Cache& cache() {
  static auto* c = new Cache();  // outlives every tensor, including those freed at exit
  return *c;
}

void Cache::raw_free(void* ptr) { cache().free(ptr); }

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

// ---- pinned host memory ----------------------------------------------------------------

class HostAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t nbytes) override {
    void* ptr = nullptr;
    if (nbytes) {
      npusimError_t err = npusimHostAlloc(&ptr, nbytes);
      TORCH_CHECK_WITH(OutOfMemoryError, err == npusimSuccess,
                       "npusim: could not allocate ", format_size(nbytes), " of pinned host memory");
    }
    return c10::DataPtr(ptr, ptr, &host_free, c10::Device(c10::kCPU));
  }
  c10::DeleterFnPtr raw_deleter() const override { return &host_free; }
  void copy_data(void* dst, const void* src, std::size_t count) const override {
    std::memcpy(dst, src, count);
  }

 private:
  static void host_free(void* ptr) { (void)npusimFreeHost(ptr); }
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

c10::Allocator* host_allocator() {
  static HostAllocator allocator;
  return &allocator;
}

bool is_pinned_ptr(const void* ptr) {
  npusimPointerAttributes attr;
  return npusimPointerGetAttributes(&attr, ptr) == npusimSuccess && attr.type == npusimMemoryTypeHost;
}

}  // namespace torch_npu_sim
