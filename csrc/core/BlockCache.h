// The caching allocator's per-device block caches (BlockCache.cpp), used by the c10
// allocators of Allocator.cpp.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <c10/core/CachingDeviceAllocator.h>
#include <c10/core/Stream.h>

#include "npusim_runtime.h"

namespace torch_npu_sim {

// Which memory other processes may map, as the cache sees it.
struct SharingStats {
  bool enabled;                // new large segments are made shareable
  int64_t shareable_segments;  // reserved segments that peers may map (each holds a descriptor)
  int64_t handles_exported;    // handles given out for spans of live blocks, in all
  int64_t peer_mappings_open;  // peers' segments this process holds open now
};

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

  // Sharing with the other processes of a group (collectives that read peers' memory in
  // place ask here, never the runtime directly). From enable_sharing() on, new segments of
  // at least NPUSIM_IPC_MIN_BYTES are shareable from birth; blocks made before stay private.
  void enable_sharing();
  // A handle for [ptr, ptr + bytes) if that span lies inside one live shareable block.
  bool share(const void* ptr, size_t bytes, npusimIpcMemHandle_t* handle);
  // A peer's span, mapped here (nullptr and *err on failure); close_peer when done.
  void* open_peer(const npusimIpcMemHandle_t& handle, size_t bytes, npusimError_t* err);
  void close_peer(void* ptr);
  SharingStats sharing_stats();

  // Graph memory pools (CUDA's private pools). While `stream` of `device` captures into pool
  // `id`, allocations made with that stream current come from the pool and blocks freed there
  // go back to it, never to other users; a pool's memory stays reserved while a graph retains
  // it, and is released once the last one lets go (blocks still held by tensors then return
  // to the ordinary cache when freed). Scopes on one stream nest: the innermost one wins.
  void begin_pool_allocation(c10::DeviceIndex device, c10::MempoolId_t id, npusimStream_t stream);
  void end_pool_allocation(c10::DeviceIndex device, npusimStream_t stream);
  void retain_pool(c10::DeviceIndex device, c10::MempoolId_t id);
  void release_pool(c10::DeviceIndex device, c10::MempoolId_t id);
  bool in_private_pool(void* ptr);  // a live block allocated from some graph pool?
  size_t pool_reserved_bytes(c10::DeviceIndex device, c10::MempoolId_t id);
  // Sleep (vLLM's sleep mode): a pool's segments give their device capacity back, keeping
  // their addresses (contents copied to host memory first with keep_contents; dropped
  // otherwise); wake_pool takes the capacity again and restores what was kept. Returns the
  // bytes given back.
  size_t sleep_pool(c10::DeviceIndex device, c10::MempoolId_t id, bool keep_contents);
  void wake_pool(c10::DeviceIndex device, c10::MempoolId_t id);
};

Cache& cache();

std::string format_size(size_t bytes);  // "1.50 MiB"

}  // namespace torch_npu_sim
