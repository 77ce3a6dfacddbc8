// Device memory shared between the processes of one host (the IPC section of the API).
// Shareable allocations are memfd-backed from birth (memory.cpp); importing opens that
// memfd through /proc/<pid>/fd and maps it. A pid and a descriptor number name a file only
// within one PID namespace and only while the owner lives, so a handle also carries the
// owner's PID namespace and the file's identity (device, inode), both checked on open. Imported mappings stay cached after close, since
// collectives open the same buffers step after step; the cache is bounded, and evicts
// the least recently used mapping nobody holds.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <list>
#include <mutex>
#include <random>

#include "memory_internal.h"
#include "runtime_internal.h"

namespace npusim_rt {
namespace {

struct HandleData {
  uint32_t magic;
  int32_t pid;
  int32_t fd;
  uint32_t reserved;
  uint64_t process_nonce;  // tells a process from an earlier one with the same pid
  uint64_t serial;
  uint64_t size;           // bytes of the allocation
  uint64_t mapped;         // bytes of the allocation's mapping
  uint64_t offset;         // of the pointer within the allocation
  uint64_t file_dev, file_ino;  // the memfd's identity
  uint64_t pid_ns;         // inode of the owner's PID namespace
  uint64_t unused[2];
};
static_assert(sizeof(HandleData) == sizeof(npusimIpcMemHandle_t), "IPC handle layout");
constexpr uint32_t kHandleMagic = 0x4350494e;  // "NIPC"

constexpr size_t kCacheMaxMappings = 256;
constexpr size_t kCacheMaxBytes = size_t(1) << 30;

uint64_t process_nonce() {
  static const uint64_t nonce = [] {
    std::random_device rd;
    return (uint64_t(rd()) << 32 ^ rd()) ^ uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  }();
  return nonce;
}

// Inode of this process's PID namespace; 0 when it cannot be read (then nothing is opened).
uint64_t pid_namespace() {
  struct stat st{};
  return stat("/proc/self/ns/pid", &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

struct PeerMapping {
  int32_t pid;
  uint64_t nonce, serial, file_ino;
  uint8_t* base;
  size_t mapped;
  int users;
};

std::mutex cache_mutex;
std::list<PeerMapping> cache;  // most recently used first
size_t cache_bytes = 0;

void evict_unused() {
  for (auto it = cache.end(); it != cache.begin() && (cache.size() > kCacheMaxMappings || cache_bytes > kCacheMaxBytes);) {
    --it;
    if (it->users > 0) continue;
    munmap(it->base, it->mapped);
    cache_bytes -= it->mapped;
    it = cache.erase(it);
  }
}

}  // namespace
}  // namespace npusim_rt

using namespace npusim_rt;

extern "C" {

npusimError_t npusimIpcGetMemHandle(npusimIpcMemHandle_t* handle, void* ptr) {
  if (!handle || !ptr) return npusimErrorInvalidValue;
  SharedAllocation a{};
  npusimError_t err = share_device_allocation(ptr, &a);
  if (err != npusimSuccess) return err;
  HandleData h{};
  h.magic = kHandleMagic;
  h.pid = static_cast<int32_t>(getpid());
  h.fd = a.fd;
  h.process_nonce = process_nonce();
  h.serial = a.serial;
  h.size = a.size;
  h.mapped = a.mapped;
  struct stat st{};
  if (fstat(a.fd, &st) != 0) return npusimErrorNotSupported;
  h.file_dev = static_cast<uint64_t>(st.st_dev);
  h.file_ino = static_cast<uint64_t>(st.st_ino);
  h.pid_ns = pid_namespace();
  h.offset = static_cast<uint64_t>(static_cast<uint8_t*>(ptr) - static_cast<uint8_t*>(a.base));
  std::memcpy(handle->bytes, &h, sizeof h);
  return npusimSuccess;
}

npusimError_t npusimIpcOpenMemHandle(void** ptr, npusimIpcMemHandle_t handle, size_t bytes) {
  if (!ptr) return npusimErrorInvalidValue;
  *ptr = nullptr;
  HandleData h;
  std::memcpy(&h, handle.bytes, sizeof h);
  // the span read or written through the mapping must lie inside the one allocation
  if (h.magic != kHandleMagic || h.size > h.mapped || h.offset > h.size || bytes > h.size - h.offset)
    return npusimErrorInvalidResourceHandle;
  // another PID namespace: /proc/<pid> here names some other process, or none
  if (h.pid_ns == 0 || h.pid_ns != pid_namespace()) return npusimErrorNotSupported;
  std::lock_guard<std::mutex> lock(cache_mutex);
  // own memory: use the pointer (a forked child, with the same nonce, is another process)
  if (h.process_nonce == process_nonce() && h.pid == static_cast<int32_t>(getpid())) return npusimErrorInvalidResourceHandle;
  for (auto it = cache.begin(); it != cache.end(); ++it) {
    if (it->pid != h.pid || it->nonce != h.process_nonce || it->serial != h.serial) continue;
    if (h.mapped != it->mapped || h.file_ino != it->file_ino) return npusimErrorInvalidResourceHandle;
    it->users++;
    cache.splice(cache.begin(), cache, it);
    *ptr = it->base + h.offset;
    return npusimSuccess;
  }
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/fd/%d", h.pid, h.fd);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return npusimErrorInvalidResourceHandle;
  struct stat st{};
  void* base = MAP_FAILED;
  // the descriptor number may name another file by now (the allocation freed, the owner
  // gone and its pid reused): only the very file the handle was made from is mapped
  if (fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_dev) == h.file_dev &&
      static_cast<uint64_t>(st.st_ino) == h.file_ino && static_cast<uint64_t>(st.st_size) == h.mapped)
    base = mmap(nullptr, h.mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) return npusimErrorInvalidResourceHandle;
  cache.push_front(PeerMapping{h.pid, h.process_nonce, h.serial, h.file_ino, static_cast<uint8_t*>(base), h.mapped, 1});
  cache_bytes += h.mapped;
  evict_unused();
  *ptr = static_cast<uint8_t*>(base) + h.offset;
  return npusimSuccess;
}

npusimError_t npusimIpcCloseMemHandle(void* ptr) {
  if (!ptr) return npusimErrorInvalidValue;
  auto* p = static_cast<uint8_t*>(ptr);
  std::lock_guard<std::mutex> lock(cache_mutex);
  for (auto& m : cache) {
    if (p < m.base || p >= m.base + m.mapped || m.users == 0) continue;
    m.users--;
    evict_unused();
    return npusimSuccess;
  }
  return npusimErrorInvalidValue;
}

}  // extern "C"
