// Shared-memory transport: one single-producer single-consumer ring per ordered pair of
// ranks and lane, and one doorbell (a futex word) per rank. A writer rings the reader's
// doorbell after writing, a reader rings the writer's after freeing space; a rank with
// nothing to do sleeps on its own doorbell, so one futex covers all its streams.
#include "distributed/Transport.h"

#include <c10/util/Exception.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "distributed/Handshake.h"
#include "distributed/JoinInfo.h"

namespace torch_npu_sim::dist {
namespace {

constexpr uint64_t kSegmentMagic = 0x31474553'4d53504eull;  // "NPSMSEG1"
constexpr size_t kLine = 64;

struct alignas(kLine) Doorbell {
  std::atomic<uint32_t> seq;
  std::atomic<uint32_t> sleeping;
};

struct alignas(kLine) RingControl {
  std::atomic<uint64_t> head;  // bytes ever written (producer)
  char pad[kLine - sizeof(uint64_t)];
  std::atomic<uint64_t> tail;  // bytes ever read (consumer)
  char pad2[kLine - sizeof(uint64_t)];
};

struct SegmentHeader {
  uint64_t magic;
  uint32_t world;
  uint32_t reserved;
  uint64_t ring_bytes;
};

size_t header_bytes(int world) {
  size_t b = sizeof(SegmentHeader) + kLine + sizeof(Doorbell) * world;
  return (b + 4095) / 4096 * 4096;
}

size_t ring_stride(size_t ring_bytes) { return sizeof(RingControl) + ring_bytes; }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

long futex(std::atomic<uint32_t>* addr, int op, uint32_t val, const timespec* ts) {
  // Shared (not PRIVATE) futex ops: the word lives in memory mapped by several processes.
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), op, val, ts, nullptr, 0);
}

class ShmTransport final : public Transport {
 public:
  ShmTransport(std::unique_ptr<ShmSegment> seg, int rank, int world, size_t ring_bytes)
      : seg_(std::move(seg)), rank_(rank), world_(world), ring_bytes_(ring_bytes) {
    auto* base = static_cast<char*>(seg_->base);
    doorbells_ = reinterpret_cast<Doorbell*>(base + ((sizeof(SegmentHeader) + kLine - 1) / kLine) * kLine);
    rings_ = base + header_bytes(world);
  }
  const char* name() const override { return "shm"; }

  size_t try_send(int peer, Lane lane, const void* data, size_t len) override {
    RingControl* rc = control(rank_, peer, lane);
    uint64_t head = rc->head.load(std::memory_order_relaxed);
    uint64_t tail = rc->tail.load(std::memory_order_acquire);
    size_t n = std::min<size_t>(len, ring_bytes_ - (head - tail));
    if (n == 0) return 0;
    char* buf = reinterpret_cast<char*>(rc + 1);
    size_t at = head % ring_bytes_;
    size_t first = std::min(n, ring_bytes_ - at);
    std::memcpy(buf + at, data, first);
    if (n > first) std::memcpy(buf, static_cast<const char*>(data) + first, n - first);
    rc->head.store(head + n, std::memory_order_release);
    ring(peer);
    return n;
  }

  size_t try_recv(int peer, Lane lane, void* data, size_t len) override {
    RingControl* rc = control(peer, rank_, lane);
    uint64_t tail = rc->tail.load(std::memory_order_relaxed);
    uint64_t head = rc->head.load(std::memory_order_acquire);
    size_t n = std::min<size_t>(len, head - tail);
    if (n == 0) return 0;
    const char* buf = reinterpret_cast<const char*>(rc + 1);
    size_t at = tail % ring_bytes_;
    size_t first = std::min(n, ring_bytes_ - at);
    std::memcpy(data, buf + at, first);
    if (n > first) std::memcpy(static_cast<char*>(data) + first, buf, n - first);
    rc->tail.store(tail + n, std::memory_order_release);
    ring(peer);
    return n;
  }

  const void* peek(int peer, Lane lane, size_t* available) override {
    RingControl* rc = control(peer, rank_, lane);
    uint64_t tail = rc->tail.load(std::memory_order_relaxed);
    uint64_t head = rc->head.load(std::memory_order_acquire);
    size_t at = tail % ring_bytes_;
    *available = std::min<size_t>(head - tail, ring_bytes_ - at);
    return reinterpret_cast<const char*>(rc + 1) + at;
  }

  void consume(int peer, Lane lane, size_t n) override {
    RingControl* rc = control(peer, rank_, lane);
    rc->tail.store(rc->tail.load(std::memory_order_relaxed) + n, std::memory_order_release);
    ring(peer);
  }

  uint64_t ticket() override { return doorbells_[rank_].seq.load(std::memory_order_seq_cst); }

  void wait(uint64_t ticket, const std::vector<Interest>&, std::chrono::microseconds timeout) override {
    Doorbell& d = doorbells_[rank_];
    auto t = static_cast<uint32_t>(ticket);
    // A short spin (a few microseconds) catches a peer that is just behind without a
    // system call; then sleep on the futex. No sched_yield: when other processes load the
    // cores, each yield can hand a whole time slice to them, which made collectives 10x
    // slower than gloo's blocking waits; a futex sleeper is woken (and favoured) at once.
    constexpr int kSpins = 256;
    for (int i = 0; i < kSpins; ++i) {
      if (d.seq.load(std::memory_order_acquire) != t) return;
      cpu_relax();
    }
    d.sleeping.fetch_add(1, std::memory_order_seq_cst);
    timespec ts{static_cast<time_t>(timeout.count() / 1000000), static_cast<long>(timeout.count() % 1000000) * 1000};
    futex(&d.seq, FUTEX_WAIT, t, &ts);
    d.sleeping.fetch_sub(1, std::memory_order_seq_cst);
  }

  void interrupt() override { ring(rank_); }

 private:
  RingControl* control(int src, int dst, Lane lane) {
    size_t index = (static_cast<size_t>(src) * world_ + dst) * kLanes + static_cast<size_t>(lane);
    return reinterpret_cast<RingControl*>(rings_ + index * ring_stride(ring_bytes_));
  }
  void ring(int who) {
    Doorbell& d = doorbells_[who];
    d.seq.fetch_add(1, std::memory_order_seq_cst);
    if (d.sleeping.load(std::memory_order_seq_cst) != 0) futex(&d.seq, FUTEX_WAKE, INT32_MAX, nullptr);
  }

  std::unique_ptr<ShmSegment> seg_;
  const int rank_;
  const int world_;
  const size_t ring_bytes_;
  Doorbell* doorbells_;
  char* rings_;
};

constexpr const char* kPrefix = "npusim-";

// "/npusim-<pid namespace>-<pid>-<start time>-<128 random bits>": unguessable, and it
// names its creator, so a segment whose creator died before unlinking it (SIGKILL between
// creation and the moment all ranks have mapped it) can be recognised and removed.
std::string tagged_name() {
  ProcessTag me = this_process();
  unsigned char bytes[16];
  random_bytes(bytes, sizeof(bytes));
  static const char* hex = "0123456789abcdef";
  std::string name = "/" + std::string(kPrefix) + std::to_string(me.ns) + "-" + std::to_string(me.pid) + "-" +
                     std::to_string(me.start_time) + "-";
  for (unsigned char b : bytes) (name += hex[b >> 4]) += hex[b & 15];
  return name;
}

// Removes this user's segments whose creator (in this pid namespace) is gone. Segments
// of live processes, other users, other pid namespaces or unknown names are left alone.
void sweep_orphans() {
  ProcessTag me = this_process();
  DIR* dir = opendir("/dev/shm");
  if (!dir) return;
  while (dirent* e = readdir(dir)) {
    unsigned long long ns = 0, start = 0;
    long long pid = 0;
    int used = 0;
    if (std::strncmp(e->d_name, kPrefix, std::strlen(kPrefix)) != 0 ||
        std::sscanf(e->d_name + std::strlen(kPrefix), "%llu-%lld-%llu-%*32[0-9a-f]%n", &ns, &pid, &start, &used) != 3 ||
        e->d_name[std::strlen(kPrefix) + used] != '\0' || ns != me.ns || !process_gone(pid, start))
      continue;
    struct stat st {};
    std::string path = std::string("/dev/shm/") + e->d_name;
    if (stat(path.c_str(), &st) == 0 && st.st_uid == geteuid()) shm_unlink(("/" + std::string(e->d_name)).c_str());
  }
  closedir(dir);
}

std::string mib(uint64_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

void* map_fd(int fd, size_t bytes, const std::string& name) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  close(fd);
  TORCH_CHECK(p != MAP_FAILED, "npusim: mmap of shared memory ", name, " failed: ", std::strerror(err));
  return p;
}

}  // namespace

ShmSegment::~ShmSegment() {
  if (base) munmap(base, bytes);
}

size_t shm_segment_bytes(int world, size_t ring_bytes) {
  size_t rings = 0, total = 0;
  bool overflow = __builtin_mul_overflow(static_cast<size_t>(world) * world * kLanes, ring_stride(ring_bytes), &rings) ||
                  __builtin_add_overflow(rings, header_bytes(world), &total) || total > (size_t(1) << 62);
  TORCH_CHECK(!overflow, "npusim: ", world, " ranks with ", ring_bytes, "-byte rings need more shared memory than ",
              "can exist; lower NPUSIM_SHM_RING_BYTES or use NPUSIM_TRANSPORT=tcp");
  return total;
}

std::unique_ptr<ShmSegment> shm_create(int world, size_t ring_bytes) {
  sweep_orphans();
  auto seg = std::make_unique<ShmSegment>();
  seg->name = tagged_name();
  seg->bytes = shm_segment_bytes(world, ring_bytes);
  int fd = shm_open(seg->name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  TORCH_CHECK(fd >= 0, "npusim: cannot create shared memory ", seg->name, ": ", std::strerror(errno));
  // Reserve every page now: a /dev/shm too small fails here, clearly, instead of with a
  // SIGBUS in the middle of a collective when a ring first reaches an unbacked page.
  int err;
  do {
    err = posix_fallocate(fd, 0, static_cast<off_t>(seg->bytes));
  } while (err == EINTR);
  if (err != 0) {
    close(fd);
    shm_unlink(seg->name.c_str());
    struct statvfs fs {};
    std::string free_space = statvfs("/dev/shm", &fs) == 0 ? mib(uint64_t(fs.f_bavail) * fs.f_frsize) : "unknown";
    TORCH_CHECK(err != ENOSPC && err != EFBIG,
                "npusim: /dev/shm is too small for the shared-memory transport: ", world, " ranks with ",
                "NPUSIM_SHM_RING_BYTES=", ring_bytes, " need ", mib(seg->bytes), ", ", free_space,
                " free; enlarge /dev/shm (e.g. docker --shm-size), lower NPUSIM_SHM_RING_BYTES or set ",
                "NPUSIM_TRANSPORT=tcp");
    TORCH_CHECK(false, "npusim: cannot reserve ", seg->bytes, " bytes of shared memory: ", std::strerror(err));
  }
  try {
    seg->base = map_fd(fd, seg->bytes, seg->name);
  } catch (...) {
    shm_unlink(seg->name.c_str());
    throw;
  }
  auto* h = static_cast<SegmentHeader*>(seg->base);
  h->world = world;
  h->ring_bytes = ring_bytes;
  std::atomic_thread_fence(std::memory_order_release);
  h->magic = kSegmentMagic;
  return seg;
}

std::unique_ptr<ShmSegment> shm_open_existing(const std::string& name, int world, size_t ring_bytes) {
  TORCH_CHECK(name.rfind(std::string("/") + kPrefix, 0) == 0 && name.size() < 128 &&
                  name.find('/', 1) == std::string::npos,
              "npusim: refusing shared-memory name '", name, "'");
  int fd = shm_open(name.c_str(), O_RDWR, 0);
  TORCH_CHECK(fd >= 0, "npusim: cannot open shared memory ", name, ": ", std::strerror(errno));
  struct stat st {};
  size_t expected = shm_segment_bytes(world, ring_bytes);
  if (fstat(fd, &st) != 0 || st.st_uid != geteuid() || (st.st_mode & 077) != 0 ||
      static_cast<size_t>(st.st_size) != expected) {
    close(fd);
    TORCH_CHECK(false, "npusim: shared memory ", name,
                " is not a private segment of the expected size (owner, mode or size differ)");
  }
  auto seg = std::make_unique<ShmSegment>();
  seg->name = name;
  seg->bytes = expected;
  seg->base = map_fd(fd, expected, name);
  auto* h = static_cast<SegmentHeader*>(seg->base);
  TORCH_CHECK(h->magic == kSegmentMagic && h->world == static_cast<uint32_t>(world) &&
                  h->ring_bytes == ring_bytes,
              "npusim: shared memory ", name, " has an unexpected layout");
  return seg;
}

void shm_unlink_quietly(const std::string& name) {
  if (!name.empty()) shm_unlink(name.c_str());
}

std::unique_ptr<Transport> make_shm_transport(std::unique_ptr<ShmSegment> segment, int rank,
                                              int world, size_t ring_bytes) {
  return std::make_unique<ShmTransport>(std::move(segment), rank, world, ring_bytes);
}

}  // namespace torch_npu_sim::dist
