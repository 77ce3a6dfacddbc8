// Device memory shared between processes (npusimIpc*). Run by tests/runtime/test_runtime.py
// with NPUSIM_DEVICE_MEMORY=64MiB.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

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

int main() {
  npusimIpcMemHandle_t h;
  void* small = nullptr;
  EXPECT(npusimMalloc(&small, NPUSIM_IPC_MIN_BYTES - 1) == npusimSuccess);
  EXPECT(npusimIpcGetMemHandle(&h, small) == npusimErrorNotSupported);  // below the sharing size
  void* host = nullptr;
  EXPECT(npusimHostAlloc(&host, kBig) == npusimSuccess);
  EXPECT(npusimIpcGetMemHandle(&h, host) == npusimErrorInvalidDevicePointer);
  int stack_value = 0;
  EXPECT(npusimIpcGetMemHandle(&h, &stack_value) == npusimErrorInvalidDevicePointer);

  void* big = nullptr;
  EXPECT(npusimMalloc(&big, kBig) == npusimSuccess);
  fill(big, kBig, 3);
  char* inner = static_cast<char*>(big) + 4096 + 17;
  EXPECT(npusimIpcGetMemHandle(&h, inner) == npusimSuccess);
  EXPECT(holds(big, kBig, 3));  // sharing kept the address and the contents
  npusimPointerAttributes attr;
  EXPECT(npusimPointerGetAttributes(&attr, inner) == npusimSuccess && attr.base == big && attr.size == kBig);
  void* self = nullptr;
  EXPECT(npusimIpcOpenMemHandle(&self, h) == npusimErrorInvalidResourceHandle);  // the owner uses its pointer
  npusimIpcMemHandle_t garbage;
  std::memset(&garbage, 0x5a, sizeof garbage);
  EXPECT(npusimIpcOpenMemHandle(&self, garbage) == npusimErrorInvalidResourceHandle);

  pid_t child = fork();
  if (child == 0) {
    // another process: the handle maps the parent's memory, read and write
    int bad = 0;
    void* peer = nullptr;
    if (npusimIpcOpenMemHandle(&peer, h) != npusimSuccess) bad |= 1;
    else if (std::memcmp(peer, inner, 64) != 0) bad |= 2;
    else std::memset(peer, 0xee, 64);
    void* again = nullptr;  // opened twice: the cached mapping
    if (npusimIpcOpenMemHandle(&again, h) != npusimSuccess || again != peer) bad |= 4;
    npusimIpcCloseMemHandle(again);
    npusimIpcCloseMemHandle(peer);
    // the child's own view of the allocation is copy-on-write: the parent does not see this
    std::memset(big, 0x11, 16);
    _exit(bad);
  }
  int status = -1;
  EXPECT(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT(static_cast<unsigned char>(inner[0]) == 0xee && static_cast<unsigned char>(inner[63]) == 0xee);
  EXPECT(holds(big, 16, 3));
  EXPECT(holds(inner + 64, kBig - 4096 - 17 - 64, static_cast<unsigned char>(3 + (4096 + 17 + 64) * 7)));

  npusimIpcMemHandle_t again;
  EXPECT(npusimIpcGetMemHandle(&again, big) == npusimSuccess);  // already shared: same allocation
  EXPECT(npusimFree(big) == npusimSuccess);
  child = fork();
  if (child == 0) {
    void* peer = nullptr;  // freed: its memory can no longer be opened
    _exit(npusimIpcOpenMemHandle(&peer, h) == npusimErrorInvalidResourceHandle ? 0 : 1);
  }
  EXPECT(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT(npusimFree(small) == npusimSuccess && npusimFreeHost(host) == npusimSuccess);
  if (failures) return 1;
  std::printf("ipc tests passed\n");
  return 0;
}
