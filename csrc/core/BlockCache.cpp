// The caching allocator's block caches: blocks are cached per device and per allocating
// stream, so freeing and reallocating a tensor costs no runtime call; a block used on
// other streams (record_stream) is reused only once events on those streams have completed.
// The cache also owns which blocks other processes may map (as CUDA's allocator owns IPC):
// once a process joins a group that reads peers' memory in place, its large segments are
// made shareable at allocation, and collectives ask it for handles to spans of live blocks.
#include "core/BlockCache.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

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
// Map and set nodes kept for reuse, so a cached allocation and its free call no malloc.
constexpr size_t kSpareNodes = 64;

// A graph's private pool. Its blocks are cached under the pool's tag in place of a stream,
// so only allocations routed to the pool find them.
struct Pool {
  int graphs = 0;    // graphs (or sleep-mode tags) retaining it
  int captures = 0;  // captures (or tagged scopes) allocating into it now
  size_t reserved = 0;
  bool asleep = false;
  std::map<void*, std::vector<uint8_t>> backups;  // contents kept on the host while asleep
  bool alive() const { return graphs > 0 || captures > 0; }
  npusimStream_t tag() { return reinterpret_cast<npusimStream_t>(this); }
};

struct Block {
  c10::DeviceIndex device;
  npusimStream_t stream;  // stream it was allocated on
  size_t size;            // rounded size reserved for it
  size_t requested;
  void* ptr;
  std::vector<c10::Stream> stream_uses;  // other streams (record_stream)
  bool shareable = false;                // other processes may map it (npusimMemShareable)
  std::shared_ptr<Pool> pool;            // the graph pool it belongs to (null: none)
};

struct BlockOrder {
  bool operator()(const Block* a, const Block* b) const {
    if (a->stream != b->stream) return a->stream < b->stream;
    if (a->size != b->size) return a->size < b->size;
    return a->ptr < b->ptr;
  }
};

using FreeBlocks = std::set<Block*, BlockOrder>;
using ActiveBlocks = std::unordered_map<void*, Block*>;

struct PendingFree {
  Block* block;
  std::vector<npusimEvent_t> events;
};

// One per device, with its own lock: threads working on different devices never wait
// for each other, and a device's runtime calls (malloc, free, events) are made under its
// lock only.
struct DeviceCache {
  std::mutex mutex;
  FreeBlocks free_blocks;
  std::vector<FreeBlocks::node_type> spare_nodes;
  std::vector<PendingFree> pending;  // freed but possibly still in use on other streams
  DeviceStats stats;
  std::map<c10::MempoolId_t, std::shared_ptr<Pool>> pools;
  std::vector<std::pair<npusimStream_t, std::shared_ptr<Pool>>> routes;  // capturing stream -> pool
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

// Makes `device` the calling thread's runtime device for a scope, restored on every exit.
class RuntimeDeviceGuard {
 public:
  explicit RuntimeDeviceGuard(int device) : saved_(current_device()) { NPUSIM_CHECK(npusimSetDevice(device)); }
  ~RuntimeDeviceGuard() { (void)npusimSetDevice(saved_); }
  RuntimeDeviceGuard(const RuntimeDeviceGuard&) = delete;
  RuntimeDeviceGuard& operator=(const RuntimeDeviceGuard&) = delete;

 private:
  int saved_;
};

class DeviceCaches {
 public:
  c10::DataPtr allocate(c10::DeviceIndex device, size_t nbytes) {
    c10::Device dev(c10::DeviceType::PrivateUse1, device);
    if (nbytes == 0) return c10::DataPtr(nullptr, dev);
    npusimStream_t stream = runtime_stream(current_stream(device));  // also validates `device`
    size_t size = round_size(nbytes);
    auto& cache = caches_[device];
    std::lock_guard<std::mutex> lock(cache.mutex);
    process_pending(cache);
    std::shared_ptr<Pool> pool;
    for (auto route = cache.routes.rbegin(); route != cache.routes.rend(); ++route)  // the innermost scope wins
      if (route->first == stream) {
        pool = route->second;
        stream = pool->tag();
        break;
      }
    Block* block = take_cached(cache, stream, size);
    if (!block) {
      block = allocate_segment(device, cache, stream, size, nbytes);
      block->pool = pool;
      if (pool) pool->reserved += block->size;
    }
    block->requested = nbytes;
    {
      std::lock_guard<std::mutex> active(active_mutex_);
      if (spare_active_.empty()) {
        active_.emplace(block->ptr, block);
      } else {
        ActiveBlocks::node_type node = std::move(spare_active_.back());
        spare_active_.pop_back();
        node.key() = block->ptr;
        node.mapped() = block;
        active_.insert(std::move(node));
      }
    }
    update(cache.stats.allocation, block->size, 1);
    update(cache.stats.allocated_bytes, block->size, static_cast<int64_t>(block->size));
    update(cache.stats.active, block->size, 1);
    update(cache.stats.active_bytes, block->size, static_cast<int64_t>(block->size));
    update(cache.stats.requested_bytes, block->size, static_cast<int64_t>(nbytes));
    return c10::DataPtr(block->ptr, block->ptr, &Cache::raw_free, dev);
  }

  // The DataPtr deleter: it runs inside destructors, where an escaping exception would
  // call std::terminate, so a failure is reported as a warning (outside every lock).
  void free(void* ptr) noexcept {
    try {
      std::string error = free_block(ptr);
      if (!error.empty()) report_free_error(error.c_str());
    } catch (const std::exception& e) {
      report_free_error(e.what());
    } catch (...) {
      report_free_error("unknown exception");
    }
  }

  bool owns(void* ptr) {
    std::lock_guard<std::mutex> lock(active_mutex_);
    return active_.count(ptr) != 0;
  }

  void record_stream(void* ptr, const c10::Stream& stream) {
    npusimStream_t used_on = runtime_stream(stream);  // validates
    Block* block = nullptr;
    {
      std::lock_guard<std::mutex> lock(active_mutex_);
      auto it = active_.find(ptr);
      TORCH_CHECK(it != active_.end(), "record_stream: the tensor's memory was not allocated by npusim");
      block = it->second;
    }
    // the caller holds the tensor, so the block stays allocated; its uses change under
    // its device's lock, where free() reads them
    if (used_on == block->stream) return;
    std::lock_guard<std::mutex> lock(caches_[block->device].mutex);
    auto& uses = block->stream_uses;
    if (std::find(uses.begin(), uses.end(), stream) == uses.end()) uses.push_back(stream);
  }

  void empty_cache() {
    for (auto& cache : caches_) {
      std::lock_guard<std::mutex> lock(cache.mutex);
      process_pending(cache);
      release_cached(cache);
    }
  }

  DeviceStats stats(c10::DeviceIndex device) {
    auto& cache = caches_.at(checked(device));
    std::lock_guard<std::mutex> lock(cache.mutex);
    return cache.stats;
  }

  void reset_accumulated(c10::DeviceIndex device) {
    auto& cache = caches_.at(checked(device));
    std::lock_guard<std::mutex> lock(cache.mutex);
    auto& s = cache.stats;
    for_each_stat(s, [](Stat& stat) { stat.reset_accumulated(); });
    s.num_alloc_retries = s.num_ooms = s.num_sync_all_streams = s.num_device_alloc = s.num_device_free = 0;
  }

  void reset_peak(c10::DeviceIndex device) {
    auto& cache = caches_.at(checked(device));
    std::lock_guard<std::mutex> lock(cache.mutex);
    for_each_stat(cache.stats, [](Stat& stat) { stat.reset_peak(); });
  }

  void enable_sharing() { sharing_ = true; }

  // A handle to [ptr, ptr + bytes) when that span lies inside one live shareable block.
  bool share(const void* ptr, size_t bytes, npusimIpcMemHandle_t* handle) {
    npusimPointerAttributes attr{};
    if (npusimPointerGetAttributes(&attr, ptr) != npusimSuccess || attr.type != npusimMemoryTypeDevice) return false;
    Block* block = nullptr;
    {
      std::lock_guard<std::mutex> lock(active_mutex_);
      auto it = active_.find(attr.base);
      if (it == active_.end()) return false;
      block = it->second;
    }
    // the caller holds a tensor on the block, so it stays allocated
    auto* begin = static_cast<const uint8_t*>(ptr);
    auto* end = static_cast<const uint8_t*>(block->ptr) + block->size;
    if (!block->shareable || begin > end || bytes > static_cast<size_t>(end - begin)) return false;
    if (npusimIpcGetMemHandle(handle, const_cast<void*>(ptr)) != npusimSuccess) return false;
    sharing_stats_.handles_exported++;
    return true;
  }

  void* open_peer(const npusimIpcMemHandle_t& handle, size_t bytes, npusimError_t* err) {
    void* ptr = nullptr;
    *err = npusimIpcOpenMemHandle(&ptr, handle, bytes);
    if (*err == npusimSuccess) sharing_stats_.peer_mappings_open++;
    return ptr;
  }

  void close_peer(void* ptr) {
    if (npusimIpcCloseMemHandle(ptr) == npusimSuccess) sharing_stats_.peer_mappings_open--;
  }

  void begin_pool_allocation(c10::DeviceIndex device, c10::MempoolId_t id, npusimStream_t stream) {
    auto& cache = caches_.at(checked(device));
    std::lock_guard<std::mutex> lock(cache.mutex);
    auto pool = pool_of_id(cache, id);
    pool->captures++;
    cache.routes.emplace_back(stream, std::move(pool));
  }

  void end_pool_allocation(c10::DeviceIndex device, npusimStream_t stream) {
    auto& cache = caches_.at(checked(device));
    std::lock_guard<std::mutex> lock(cache.mutex);
    for (auto it = cache.routes.end(); it != cache.routes.begin();) {  // scopes nest: the innermost ends
      --it;
      if (it->first != stream) continue;
      auto pool = it->second;
      cache.routes.erase(it);
      pool->captures--;
      if (!pool->alive()) retire(cache, pool);
      return;
    }
  }

  void retain_pool(c10::DeviceIndex device, c10::MempoolId_t id) {
    auto& cache = caches_.at(checked(device));
    std::lock_guard<std::mutex> lock(cache.mutex);
    pool_of_id(cache, id)->graphs++;
  }

  void release_pool(c10::DeviceIndex device, c10::MempoolId_t id) {
    auto& cache = caches_.at(checked(device));
    std::lock_guard<std::mutex> lock(cache.mutex);
    auto it = cache.pools.find(id);
    if (it == cache.pools.end() || it->second->graphs == 0) return;
    auto pool = it->second;
    pool->graphs--;
    if (!pool->alive()) retire(cache, pool);
  }

  // Every segment of the pool gives its capacity back (contents to the host first when
  // asked); returns the bytes given back.
  size_t sleep_pool(c10::DeviceIndex device, c10::MempoolId_t id, bool keep_contents) {
    auto& cache = caches_.at(checked(device));
    std::lock_guard<std::mutex> lock(cache.mutex);
    auto it = cache.pools.find(id);
    if (it == cache.pools.end() || it->second->asleep) return 0;
    Pool& pool = *it->second;
    size_t released = 0;
    RuntimeDeviceGuard guard(device);
    for (Block* block : segments_of(cache, it->second)) {
      if (keep_contents) {
        auto& backup = pool.backups[block->ptr];
        backup.resize(block->size);
        NPUSIM_CHECK(npusimMemcpy(backup.data(), block->ptr, block->size, npusimMemcpyDeviceToHost));
      }
      NPUSIM_CHECK(npusimMemDiscard(block->ptr));
      released += block->size;
    }
    pool.asleep = true;
    return released;
  }

  void wake_pool(c10::DeviceIndex device, c10::MempoolId_t id) {
    auto& cache = caches_.at(checked(device));
    std::lock_guard<std::mutex> lock(cache.mutex);
    auto it = cache.pools.find(id);
    if (it == cache.pools.end() || !it->second->asleep) return;
    Pool& pool = *it->second;
    RuntimeDeviceGuard guard(device);
    for (Block* block : segments_of(cache, it->second)) {
      npusimError_t err = npusimMemRecommit(block->ptr);
      TORCH_CHECK_WITH(OutOfMemoryError, err != npusimErrorMemoryAllocation, "npusim out of memory: waking up ",
                       format_size(block->size), " of a sleeping pool on npusim device ", static_cast<int>(device),
                       " (free memory first)");
      NPUSIM_CHECK(err);
      auto backup = pool.backups.find(block->ptr);
      if (backup != pool.backups.end()) {
        NPUSIM_CHECK(npusimMemcpy(block->ptr, backup->second.data(), block->size, npusimMemcpyHostToDevice));
        pool.backups.erase(backup);
      }
    }
    pool.backups.clear();
    pool.asleep = false;
  }

  bool in_private_pool(void* ptr) {
    std::lock_guard<std::mutex> lock(active_mutex_);
    auto it = active_.find(ptr);
    return it != active_.end() && it->second->pool != nullptr;
  }

  size_t pool_reserved_bytes(c10::DeviceIndex device, c10::MempoolId_t id) {
    auto& cache = caches_.at(checked(device));
    std::lock_guard<std::mutex> lock(cache.mutex);
    auto it = cache.pools.find(id);
    return it == cache.pools.end() ? 0 : it->second->reserved;
  }

  SharingStats sharing_stats() const {
    return SharingStats{sharing_.load(), sharing_stats_.shareable_segments.load(), sharing_stats_.handles_exported.load(),
                        sharing_stats_.peer_mappings_open.load()};
  }

 private:
  static c10::DeviceIndex checked(c10::DeviceIndex device) {
    if (device < 0) device = static_cast<c10::DeviceIndex>(current_device());
    check_device_index(device);
    return device;
  }

  template <typename F>
  static void for_each_stat(DeviceStats& s, F f) {
    for (auto* array : {&s.allocation, &s.segment, &s.active, &s.inactive_split, &s.allocated_bytes,
                        &s.reserved_bytes, &s.active_bytes, &s.inactive_split_bytes, &s.requested_bytes})
      for (auto& stat : *array) f(stat);
    f(s.oversize_allocations);
    f(s.oversize_segments);
  }

  static void report_free_error(const char* error) noexcept {
    try {
      TORCH_WARN("npusim allocator: error while freeing memory: ", error);
    } catch (...) {  // a warning handler that throws: still never terminate
      std::fprintf(stderr, "npusim allocator: error while freeing memory: %s\n", error);
    }
  }

  // Returns what went wrong ("" if nothing); free() reports that and anything thrown.
  std::string free_block(void* ptr) {
    Block* block = nullptr;
    {
      std::lock_guard<std::mutex> lock(active_mutex_);
      auto it = active_.find(ptr);
      if (it != active_.end()) {
        block = it->second;
        ActiveBlocks::node_type node = active_.extract(it);
        if (spare_active_.size() < kSpareNodes) spare_active_.push_back(std::move(node));
      }
    }
    if (!block) return c10::str("pointer ", ptr, " is not a live npusim block (freed twice, or not from this allocator)");
    auto& cache = caches_[block->device];
    std::lock_guard<std::mutex> lock(cache.mutex);
    update(cache.stats.allocation, block->size, -1);
    update(cache.stats.allocated_bytes, block->size, -static_cast<int64_t>(block->size));
    update(cache.stats.requested_bytes, block->size, -static_cast<int64_t>(block->requested));
    if (block->stream_uses.empty()) {
      release_to_cache(cache, block);
      return "";
    }
    // Reusable once every other stream that used the block has passed this point.
    PendingFree pending{block, {}};
    npusimError_t err = npusimSuccess;
    for (const auto& s : block->stream_uses) {
      npusimEvent_t event = nullptr;
      err = npusimEventCreateWithFlags(&event, npusimEventDisableTiming);
      if (err != npusimSuccess) break;
      pending.events.push_back(event);
      err = npusimEventRecord(event, runtime_stream(s));
      if (err != npusimSuccess) break;
    }
    if (err == npusimSuccess) {
      block->stream_uses.clear();
      cache.pending.push_back(std::move(pending));
      return "";
    }
    for (auto e : pending.events) (void)npusimEventDestroy(e);
    std::string error = c10::str("could not record an event for block ", ptr, " (", npusimGetErrorString(err), ")");
    // Without events, wait for those streams instead; the block is then free to reuse.
    npusimError_t sync = npusimSuccess;
    for (const auto& s : block->stream_uses)
      if (sync == npusimSuccess) sync = npusimStreamSynchronize(runtime_stream(s));
    if (sync != npusimSuccess)  // may still be in use: never hand it out again (it stays reserved)
      return c10::str(error, "; synchronizing its streams failed too (", npusimGetErrorString(sync),
                      "), so the block is kept out of the cache");
    block->stream_uses.clear();
    release_to_cache(cache, block);
    return c10::str(error, "; synchronized its streams instead");
  }

  // Best fit on the same stream; a small request takes only its own size class so the
  // cache never hands out much more than was asked for.
  Block* take_cached(DeviceCache& cache, npusimStream_t stream, size_t size) {
    Block key{0, stream, size, 0, nullptr, {}, false};
    auto it = cache.free_blocks.lower_bound(&key);
    if (it == cache.free_blocks.end() || (*it)->stream != stream) return nullptr;
    Block* block = *it;
    size_t slack = size <= kSmallLimit ? 0 : size / 8;
    if (block->size > size + slack) return nullptr;
    FreeBlocks::node_type node = cache.free_blocks.extract(it);
    if (cache.spare_nodes.size() < kSpareNodes) cache.spare_nodes.push_back(std::move(node));
    return block;
  }

  // Called with the device's lock held.
  Block* allocate_segment(c10::DeviceIndex device, DeviceCache& cache, npusimStream_t stream,
                          size_t size, size_t requested) {
    void* ptr = nullptr;
    npusimError_t err;
    size_t free_bytes = 0, total = 0;
    bool shareable = false;
    // a shareable segment when sharing is on and the runtime can make one, else a plain one
    auto runtime_malloc = [&] {
      shareable = sharing_ && size >= NPUSIM_IPC_MIN_BYTES;
      npusimError_t e = shareable ? npusimMallocWithFlags(&ptr, size, npusimMemShareable) : npusimErrorNotSupported;
      if (e == npusimErrorNotSupported) {
        shareable = false;
        e = npusimMalloc(&ptr, size);
      }
      return e;
    };
    {
      RuntimeDeviceGuard guard(device);
      err = runtime_malloc();
      if (err == npusimErrorMemoryAllocation) {
        // give back what the cache holds, then try once more
        cache.stats.num_alloc_retries += 1;
        process_pending(cache);
        release_cached(cache);
        err = runtime_malloc();
      }
      if (err == npusimErrorMemoryAllocation) (void)npusimMemGetInfo(&free_bytes, &total);
    }
    if (err == npusimErrorMemoryAllocation) {
      cache.stats.num_ooms += 1;
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
    if (shareable) sharing_stats_.shareable_segments++;
    return new Block{device, stream, size, requested, ptr, {}, shareable};
  }

  void release_to_cache(DeviceCache& cache, Block* block) {
    update(cache.stats.active, block->size, -1);
    update(cache.stats.active_bytes, block->size, -static_cast<int64_t>(block->size));
    if (block->pool && !block->pool->alive()) {  // its pool is gone: the memory goes back
      release_segment(cache, block);
      return;
    }
    if (cache.spare_nodes.empty()) {
      cache.free_blocks.insert(block);
      return;
    }
    FreeBlocks::node_type node = std::move(cache.spare_nodes.back());
    cache.spare_nodes.pop_back();
    node.value() = block;
    cache.free_blocks.insert(std::move(node));
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

  // One block at a time, so a failing free leaves the cache consistent. Blocks of live
  // graph pools stay: their graphs replay into them.
  void release_cached(DeviceCache& cache) {
    for (auto it = cache.free_blocks.begin(); it != cache.free_blocks.end();) {
      Block* block = *it;
      if (block->pool && block->pool->alive()) {
        ++it;
        continue;
      }
      NPUSIM_CHECK(npusimFree(block->ptr));
      it = cache.free_blocks.erase(it);
      forget_segment(cache, block);
    }
  }

  void release_segment(DeviceCache& cache, Block* block) {
    NPUSIM_CHECK(npusimFree(block->ptr));
    forget_segment(cache, block);
  }

  void forget_segment(DeviceCache& cache, Block* block) {
    cache.stats.num_device_free += 1;
    update(cache.stats.segment, block->size, -1);
    update(cache.stats.reserved_bytes, block->size, -static_cast<int64_t>(block->size));
    if (block->shareable) sharing_stats_.shareable_segments--;
    if (block->pool) block->pool->reserved -= block->size;
    delete block;
  }

  // Called with the device's lock held: the pool's blocks, allocated or cached.
  std::vector<Block*> segments_of(DeviceCache& cache, const std::shared_ptr<Pool>& pool) {
    std::vector<Block*> out;
    for (Block* b : cache.free_blocks)
      if (b->pool == pool) out.push_back(b);
    std::lock_guard<std::mutex> active(active_mutex_);
    for (auto& [ptr, b] : active_)
      if (b->pool == pool) out.push_back(b);
    return out;
  }

  std::shared_ptr<Pool> pool_of_id(DeviceCache& cache, c10::MempoolId_t id) {
    auto& pool = cache.pools[id];
    if (!pool) pool = std::make_shared<Pool>();
    return pool;
  }

  // A pool no graph or capture uses: its cached blocks go back to the runtime now, its
  // blocks still held by tensors when they are freed.
  void retire(DeviceCache& cache, const std::shared_ptr<Pool>& pool) {
    for (auto it = cache.pools.begin(); it != cache.pools.end(); ++it)
      if (it->second == pool) {
        cache.pools.erase(it);
        break;
      }
    for (auto it = cache.free_blocks.begin(); it != cache.free_blocks.end();) {
      Block* block = *it;
      if (block->pool != pool) {
        ++it;
        continue;
      }
      NPUSIM_CHECK(npusimFree(block->ptr));
      it = cache.free_blocks.erase(it);
      forget_segment(cache, block);
    }
  }

  // Lock order: a device's mutex, then active_mutex_ (held only around the map).
  std::atomic<bool> sharing_{false};
  struct {
    std::atomic<int64_t> shareable_segments{0}, handles_exported{0}, peer_mappings_open{0};
  } sharing_stats_;
  std::mutex active_mutex_;
  ActiveBlocks active_;
  std::vector<ActiveBlocks::node_type> spare_active_;
  std::array<DeviceCache, kMaxDevices> caches_;
};

DeviceCaches& caches() {
  static auto* c = new DeviceCaches();  // outlives every tensor, including those freed at exit
  return *c;
}

}  // namespace

std::string format_size(size_t bytes) {
  char buf[64];
  if (bytes < (size_t(1) << 20)) snprintf(buf, sizeof(buf), "%.2f KiB", bytes / 1024.0);
  else if (bytes < (size_t(1) << 30)) snprintf(buf, sizeof(buf), "%.2f MiB", bytes / 1048576.0);
  else snprintf(buf, sizeof(buf), "%.2f GiB", bytes / 1073741824.0);
  return buf;
}

c10::DataPtr Cache::allocate(c10::DeviceIndex device, size_t nbytes) { return caches().allocate(device, nbytes); }
void Cache::free(void* ptr) noexcept { caches().free(ptr); }
bool Cache::owns(void* ptr) { return caches().owns(ptr); }
void Cache::record_stream(void* ptr, const c10::Stream& stream) { caches().record_stream(ptr, stream); }
void Cache::empty_cache() { caches().empty_cache(); }
DeviceStats Cache::stats(c10::DeviceIndex device) { return caches().stats(device); }
void Cache::reset_accumulated(c10::DeviceIndex device) { caches().reset_accumulated(device); }
void Cache::reset_peak(c10::DeviceIndex device) { caches().reset_peak(device); }
void Cache::raw_free(void* ptr) { caches().free(ptr); }
void Cache::enable_sharing() { caches().enable_sharing(); }
bool Cache::share(const void* ptr, size_t bytes, npusimIpcMemHandle_t* handle) { return caches().share(ptr, bytes, handle); }
void* Cache::open_peer(const npusimIpcMemHandle_t& handle, size_t bytes, npusimError_t* err) {
  return caches().open_peer(handle, bytes, err);
}
void Cache::close_peer(void* ptr) { caches().close_peer(ptr); }
SharingStats Cache::sharing_stats() { return caches().sharing_stats(); }
void Cache::begin_pool_allocation(c10::DeviceIndex device, c10::MempoolId_t id, npusimStream_t stream) {
  caches().begin_pool_allocation(device, id, stream);
}
void Cache::end_pool_allocation(c10::DeviceIndex device, npusimStream_t stream) {
  caches().end_pool_allocation(device, stream);
}
void Cache::retain_pool(c10::DeviceIndex device, c10::MempoolId_t id) { caches().retain_pool(device, id); }
void Cache::release_pool(c10::DeviceIndex device, c10::MempoolId_t id) { caches().release_pool(device, id); }
bool Cache::in_private_pool(void* ptr) { return caches().in_private_pool(ptr); }
size_t Cache::sleep_pool(c10::DeviceIndex device, c10::MempoolId_t id, bool keep_contents) {
  return caches().sleep_pool(device, id, keep_contents);
}
void Cache::wake_pool(c10::DeviceIndex device, c10::MempoolId_t id) { caches().wake_pool(device, id); }
size_t Cache::pool_reserved_bytes(c10::DeviceIndex device, c10::MempoolId_t id) {
  return caches().pool_reserved_bytes(device, id);
}

Cache& cache() {
  static Cache c;
  return c;
}

}  // namespace torch_npu_sim
