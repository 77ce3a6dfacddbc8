// Device memory shared between processes (npusimIpc*). Run by tests/runtime/test_runtime.py
// with NPUSIM_DEVICE_MEMORY=64MiB.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>

#include "npusim_runtime.h"

static int failures = 0;
#define EXPECT(cond)                                                     \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
      ++failures;                                                        \
    }                                                                    \
  } while (0)

constexpr size_t kBig = 3 * NPUSIM_IPC_MIN_BYTES + 5;

static void fill(void* p, size_t n, unsigned char seed) {
  auto* b = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<unsigned char>(seed + i * 7);
}
static bool holds(const void* p, size_t n, unsigned char seed) {
  auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i] != static_cast<unsigned char>(seed + i * 7)) return false;
  return true;
}
static int wait_child(pid_t child) {
  int status = -1;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// What can be shared: only allocations made shareable, only device memory.
static void what_can_be_shared() {
  npusimIpcMemHandle_t h;
  void* small = nullptr;
  EXPECT(npusimMallocWithFlags(&small, NPUSIM_IPC_MIN_BYTES - 1, npusimMemShareable) == npusimErrorNotSupported);
  EXPECT(npusimMalloc(&small, NPUSIM_IPC_MIN_BYTES - 1) == npusimSuccess);
  EXPECT(npusimIpcGetMemHandle(&h, small) == npusimErrorNotSupported);
  void* plain = nullptr;  // large, but not made shareable at allocation
  EXPECT(npusimMalloc(&plain, kBig) == npusimSuccess);
  EXPECT(npusimIpcGetMemHandle(&h, plain) == npusimErrorNotSupported);
  void* host = nullptr;
  EXPECT(npusimHostAlloc(&host, kBig) == npusimSuccess);
  EXPECT(npusimIpcGetMemHandle(&h, host) == npusimErrorInvalidDevicePointer);
  int stack_value = 0;
  EXPECT(npusimIpcGetMemHandle(&h, &stack_value) == npusimErrorInvalidDevicePointer);
  void* p = nullptr;
  EXPECT(npusimMallocWithFlags(&p, kBig, 0x80) == npusimErrorInvalidValue);
  EXPECT(npusimFree(small) == npusimSuccess && npusimFree(plain) == npusimSuccess && npusimFreeHost(host) == npusimSuccess);
}

// Taking a handle while another thread writes the allocation loses no write (sharing
// happens at allocation, never by copying memory in use).
static void handles_lose_no_concurrent_write() {
  constexpr size_t kWords = 2 * NPUSIM_IPC_MIN_BYTES / sizeof(uint64_t);
  void* p = nullptr;
  EXPECT(npusimMallocWithFlags(&p, kWords * sizeof(uint64_t), npusimMemShareable) == npusimSuccess);
  if (!p) return;
  auto* words = static_cast<volatile uint64_t*>(p);
  std::atomic<bool> started{false};
  std::thread writer([&] {
    started = true;
    for (size_t i = 0; i < kWords; ++i) words[i] = i * 3 + 1;
  });
  while (!started) {
  }
  for (int k = 0; k < 64; ++k) {
    npusimIpcMemHandle_t h;
    EXPECT(npusimIpcGetMemHandle(&h, p) == npusimSuccess);
  }
  writer.join();
  size_t lost = 0;
  for (size_t i = 0; i < kWords; ++i) lost += words[i] != i * 3 + 1;
  EXPECT(lost == 0);
  EXPECT(npusimFree(p) == npusimSuccess);
}

int main() {
  what_can_be_shared();
  handles_lose_no_concurrent_write();

  npusimIpcMemHandle_t h;
  void* big = nullptr;
  EXPECT(npusimMallocWithFlags(&big, kBig, npusimMemShareable) == npusimSuccess);
  fill(big, kBig, 3);
  const size_t inner_offset = 4096 + 17;
  char* inner = static_cast<char*>(big) + inner_offset;
  EXPECT(npusimIpcGetMemHandle(&h, inner) == npusimSuccess);
  EXPECT(holds(big, kBig, 3));
  npusimPointerAttributes attr;
  EXPECT(npusimPointerGetAttributes(&attr, inner) == npusimSuccess && attr.base == big && attr.size == kBig);
  void* self = nullptr;
  EXPECT(npusimIpcOpenMemHandle(&self, h, 64) == npusimErrorInvalidResourceHandle);  // the owner uses its pointer
  npusimIpcMemHandle_t garbage;
  std::memset(&garbage, 0x5a, sizeof garbage);
  EXPECT(npusimIpcOpenMemHandle(&self, garbage, 64) == npusimErrorInvalidResourceHandle);
  // a neighbour allocation, possibly adjacent in memory: a span that runs into it is refused
  void* next = nullptr;
  EXPECT(npusimMallocWithFlags(&next, kBig, npusimMemShareable) == npusimSuccess);

  pid_t child = fork();
  if (child == 0) {
    // another process: the handle maps the parent's memory, read and write
    int bad = 0;
    void* peer = nullptr;
    if (npusimIpcOpenMemHandle(&peer, h, kBig - inner_offset) != npusimSuccess) bad |= 1;
    else if (std::memcmp(peer, inner, 64) != 0) bad |= 2;
    else std::memset(peer, 0xee, 64);
    void* again = nullptr;  // opened twice: the cached mapping
    if (npusimIpcOpenMemHandle(&again, h, 64) != npusimSuccess || again != peer) bad |= 4;
    npusimIpcCloseMemHandle(again);
    npusimIpcCloseMemHandle(peer);
    void* past = nullptr;  // one byte past the allocation: refused, cached mapping or not
    if (npusimIpcOpenMemHandle(&past, h, kBig - inner_offset + 1) != npusimErrorInvalidResourceHandle) bad |= 8;
    // a handle whose file identity was altered names another file: refused
    npusimIpcMemHandle_t forged = h;
    forged.bytes[64] ^= 1;  // file_ino's low byte (the layout is the runtime's own)
    forged.bytes[24] ^= 1;  // and another serial, so the cache does not answer
    if (npusimIpcOpenMemHandle(&past, forged, 64) != npusimErrorInvalidResourceHandle) bad |= 16;
    // the child's own view of the allocation is its own: the parent does not see this
    std::memset(big, 0x11, 16);
    _exit(bad);
  }
  EXPECT(wait_child(child) == 0);
  EXPECT(static_cast<unsigned char>(inner[0]) == 0xee && static_cast<unsigned char>(inner[63]) == 0xee);
  EXPECT(holds(big, 16, 3));
  EXPECT(holds(inner + 64, kBig - inner_offset - 64, static_cast<unsigned char>(3 + (inner_offset + 64) * 7)));

  // A forked child's view is a snapshot at the fork: later writes of the parent stay unseen,
  // also those the parent makes the moment fork returns, while the child would be copying.
  fill(big, kBig, 5);
  child = fork();
  if (child == 0) _exit(holds(big, kBig, 5) ? 0 : 1);
  std::memset(big, 0x77, kBig);
  EXPECT(wait_child(child) == 0);
  fill(big, kBig, 5);
  int to_child[2], to_parent[2];
  EXPECT(pipe(to_child) == 0 && pipe(to_parent) == 0);
  child = fork();
  if (child == 0) {
    char c = 0;
    (void)!write(to_parent[1], &c, 1);
    (void)!read(to_child[0], &c, 1);  // the parent has written by now
    _exit(holds(big, kBig, 5) ? 0 : 1);
  }
  char c = 0;
  EXPECT(read(to_parent[0], &c, 1) == 1);
  fill(big, kBig, 9);
  EXPECT(write(to_child[1], &c, 1) == 1);
  EXPECT(wait_child(child) == 0);

  npusimIpcMemHandle_t again;
  EXPECT(npusimIpcGetMemHandle(&again, big) == npusimSuccess);  // same allocation, again
  EXPECT(npusimFree(big) == npusimSuccess);
  child = fork();
  if (child == 0) {
    void* peer = nullptr;  // freed: its memory can no longer be opened
    _exit(npusimIpcOpenMemHandle(&peer, h, 64) == npusimErrorInvalidResourceHandle ? 0 : 1);
  }
  EXPECT(wait_child(child) == 0);
  EXPECT(npusimFree(next) == npusimSuccess);
  if (failures) return 1;
  std::printf("ipc tests passed\n");
  return 0;
}
