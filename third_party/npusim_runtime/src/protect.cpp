// Protected device memory (NPUSIM_PROTECT_MEMORY=1): device allocations are page-aligned
// mappings kept PROT_NONE except while the runtime runs a launched function or a copy or
// fill, so host code that reads device memory directly (which a real driver would not
// allow) faults and is reported instead of silently working.
//
// The access scope is process-wide, with a count: pages open on the 0 -> 1 transition and
// close on 1 -> 0, so kernels on several threads (the collective progress thread reads
// device memory too) run together. The price: while any thread is inside a scope, another
// thread may read device memory unnoticed.
#include <execinfo.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "protect.h"
#include "runtime_internal.h"

namespace npusim_rt {
namespace {

struct Region {
  size_t size;         // bytes asked for
  size_t mapped;       // bytes mapped (whole pages)
  int device;
};

std::mutex& scope_mutex() {
  static auto* m = new std::mutex();
  return *m;
}
// base -> region; changed under scope_mutex, read by the fault handler
std::map<uintptr_t, Region>& regions() {
  static auto* r = new std::map<uintptr_t, Region>();
  return *r;
}
int scope_count = 0;                       // under scope_mutex
std::atomic<uint64_t> transitions{0};      // 0 -> 1 openings, for tests and benchmarks
struct sigaction previous_action;
std::once_flag handler_once;

size_t page_size() {
  static const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

// One mprotect per run of adjacent mappings (the kernel tends to place new mappings next
// to each other), so the cost follows the address-space layout, not the allocation count.
void set_all(int prot) {
  uintptr_t run_start = 0, run_end = 0;
  for (auto& [base, region] : regions()) {
    if (base != run_end) {
      if (run_end > run_start) mprotect(reinterpret_cast<void*>(run_start), run_end - run_start, prot);
      run_start = base;
    }
    run_end = base + region.mapped;
  }
  if (run_end > run_start) mprotect(reinterpret_cast<void*>(run_start), run_end - run_start, prot);
}

// Only async-signal-safe calls from here on: write(2), not stdio.
void write_str(const char* s) {
  ssize_t ignored = write(STDERR_FILENO, s, std::strlen(s));
  (void)ignored;
}
void write_num(uintptr_t value, bool hex) {
  char buf[32];
  int i = sizeof(buf);
  buf[--i] = '\0';
  unsigned base = hex ? 16 : 10;
  do {
    buf[--i] = "0123456789abcdef"[value % base];
    value /= base;
  } while (value && i > 2);
  if (hex) {
    buf[--i] = 'x';
    buf[--i] = '0';
  }
  write_str(buf + i);
}

void on_fault(int sig, siginfo_t* info, void* context) {
  auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  Region hit_copy{0, 0, 0};
  const Region* hit = nullptr;
  uintptr_t hit_base = 0;
  if (info->si_code > 0) {  // a real fault, not a signal sent by kill/raise
    // The faulting thread never holds scope_mutex (nothing under it touches device
    // memory), so waiting briefly for another thread's allocation or free is safe; past
    // that, read anyway: the process is about to end.
    bool locked = false;
    for (int i = 0; i < 100000 && !(locked = scope_mutex().try_lock()); ++i) sched_yield();
    auto& r = regions();
    auto it = r.upper_bound(addr);
    if (it != r.begin()) {
      --it;
      if (addr < it->first + it->second.mapped) {
        hit_copy = it->second;
        hit = &hit_copy;
        hit_base = it->first;
      }
    }
    if (locked) scope_mutex().unlock();
  }
  if (!hit) {
    // not ours: hand the signal to whoever handled it before (Python's faulthandler, ...)
    sigaction(SIGSEGV, &previous_action, nullptr);
    return;  // the faulting instruction runs again under the previous handler
  }
  write_str("npusim: host code accessed npusim device memory at ");
  write_num(addr, true);
  write_str(" (npusim:");
  write_num(static_cast<uintptr_t>(hit->device), false);
  write_str(" allocation of ");
  write_num(hit->size, false);
  write_str(" bytes at ");
  write_num(hit_base, true);
  write_str(") outside a kernel launch or runtime copy (NPUSIM_PROTECT_MEMORY=1)\nnative backtrace:\n");
  void* frames[64];
  int n = backtrace(frames, 64);
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  bool chained = (previous_action.sa_flags & SA_SIGINFO) ? previous_action.sa_sigaction != nullptr
                                                          : (previous_action.sa_handler != SIG_DFL &&
                                                             previous_action.sa_handler != SIG_IGN);
  if (chained) {
    // let the previous handler add its own report (Python's faulthandler prints the Python
    // stack), then it ends the process; the fault happens again under it
    write_str("npusim: the previous SIGSEGV handler follows\n");
    sigaction(SIGSEGV, &previous_action, nullptr);
    return;
  }
  abort();
}

void install_handler() {
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_sigaction = &on_fault;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  sigaction(SIGSEGV, &action, &previous_action);
}

}  // namespace

bool protect_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("NPUSIM_PROTECT_MEMORY");
    return v && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
  }();
  return on;
}

void* protected_alloc(size_t size, int device) {
  std::call_once(handler_once, install_handler);
  size_t page = page_size();
  size_t mapped = (size + page - 1) / page * page;
  std::lock_guard<std::mutex> lock(scope_mutex());
  int prot = scope_count > 0 ? PROT_READ | PROT_WRITE : PROT_NONE;
  void* p = mmap(nullptr, mapped, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  regions()[reinterpret_cast<uintptr_t>(p)] = Region{size, mapped, device};
  return p;
}

void protected_free(void* ptr) {
  std::lock_guard<std::mutex> lock(scope_mutex());
  auto it = regions().find(reinterpret_cast<uintptr_t>(ptr));
  if (it == regions().end()) return;
  munmap(ptr, it->second.mapped);
  regions().erase(it);
}

}  // namespace npusim_rt

using namespace npusim_rt;

extern "C" {

npusimError_t npusimDeviceAccessBegin(void) {
  if (!protect_enabled()) return npusimSuccess;
  std::lock_guard<std::mutex> lock(scope_mutex());
  if (scope_count++ == 0) {
    set_all(PROT_READ | PROT_WRITE);
    transitions.fetch_add(1, std::memory_order_relaxed);
  }
  return npusimSuccess;
}

npusimError_t npusimDeviceAccessEnd(void) {
  if (!protect_enabled()) return npusimSuccess;
  std::lock_guard<std::mutex> lock(scope_mutex());
  if (scope_count == 0) return npusimErrorInvalidValue;  // an End without its Begin
  if (--scope_count == 0) set_all(PROT_NONE);
  return npusimSuccess;
}

int npusimProtectedMemoryEnabled(void) { return protect_enabled() ? 1 : 0; }

uint64_t npusimDeviceAccessOpenings(void) { return transitions.load(std::memory_order_relaxed); }

}  // extern "C"
