// Simulated time shared by all streams: chip timing, costs, host clocks, observer, totals.
#include "sim_clock.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "runtime_internal.h"

namespace npusim_rt {
namespace {

// The generic NPUSim-1 chip (the Python package's "npusim-1" preset has the same figures).
constexpr npusimChipTiming kDefaultTiming = {
    {50e12, 200e12, 400e12},  // FLOP/s fp32, bf16/fp16, int8
    1.0e12,                   // memory bandwidth, bytes/s
    5000.0,                   // launch latency, ns
    25e9, 25e9,               // host link H2D, D2H, bytes/s
    10000.0,                  // host link latency, ns
};

// Read on every launch, set rarely: an immutable snapshot swapped atomically (old ones are
// kept, so a reader holding one never sees it freed).
std::atomic<const npusimChipTiming*> current_timing{&kDefaultTiming};

// Per-op-class efficiency, the same kind of snapshot; the default is the plain roofline.
constexpr npusimEfficiencyCurve kFull = {1.0, 0.0, 1.0};
constexpr npusimEfficiency kRoofline = {{kFull, kFull, kFull}, {kFull, kFull, kFull}};
std::atomic<const npusimEfficiency*> current_efficiency{&kRoofline};

std::atomic<bool> cost_model_on{false};
std::atomic<bool> simulated_timing_on{false};

struct Observer {
  npusimActivityFn_t fn;
  void* user;
};
std::atomic<const Observer*> observer{nullptr};

std::atomic<uint64_t> host_clock[kMaxDevices];
std::atomic<uint64_t> busy_until[kMaxDevices];

struct Totals {
  npusimActivityKind kind;
  uint64_t count = 0;
  double flops = 0, bytes = 0;
  uint64_t sim_ns = 0;
};
std::mutex& totals_mutex() {
  static auto* m = new std::mutex();
  return *m;
}
std::map<std::string, Totals>& totals() {
  static auto* t = new std::map<std::string, Totals>();
  return *t;
}

uint64_t to_ns(double ns) { return ns <= 0 || !std::isfinite(ns) ? 0 : static_cast<uint64_t>(std::llround(ns)); }

const char* unnamed(npusimActivityKind kind) {
  switch (kind) {
    case npusimActivityKernel: return "(kernel)";
    case npusimActivityMemcpy: return "(memcpy)";
    case npusimActivityMemset: return "(memset)";
    case npusimActivityCollective: return "(collective)";
  }
  return "(activity)";
}

bool valid_timing(const npusimChipTiming& t) {
  auto positive = [](double v) { return std::isfinite(v) && v > 0; };
  auto non_negative = [](double v) { return std::isfinite(v) && v >= 0; };
  for (double peak : t.peak_flops)
    if (!positive(peak)) return false;
  return positive(t.memory_bandwidth) && positive(t.h2d_bandwidth) && positive(t.d2h_bandwidth) &&
         non_negative(t.launch_latency_ns) && non_negative(t.host_link_latency_ns);
}

bool valid_curve(const npusimEfficiencyCurve& c) {
  return std::isfinite(c.max) && c.max > 0 && c.max <= 1 && std::isfinite(c.half) && c.half >= 0 &&
         std::isfinite(c.exponent) && c.exponent > 0 && c.exponent <= 1;
}

// max / (1 + (half / size)^exponent): the fraction of the peak a kernel of `size` reaches (size > 0)
double efficiency_at(const npusimEfficiencyCurve& c, double size) {
  return c.half > 0 ? c.max / (1.0 + std::pow(c.half / size, c.exponent)) : c.max;
}

}  // namespace

uint64_t wall_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

uint64_t kernel_cost_ns(const npusimKernelCost* cost) {
  const npusimChipTiming& t = *current_timing.load(std::memory_order_acquire);
  if (!cost) return to_ns(t.launch_latency_ns);
  const npusimEfficiency& e = *current_efficiency.load(std::memory_order_acquire);
  int cls = cost->compute_class >= 0 && cost->compute_class < npusimComputeClassCount ? cost->compute_class : 0;
  int op = cost->op_class >= 0 && cost->op_class < npusimOpClassCount ? cost->op_class : npusimOpClassOther;
  double compute_ns =
      cost->flops > 0 ? cost->flops / (t.peak_flops[cls] * efficiency_at(e.compute[op], cost->flops)) * 1e9 : 0;
  double memory_ns =
      cost->bytes > 0 ? cost->bytes / (t.memory_bandwidth * efficiency_at(e.memory[op], cost->bytes)) * 1e9 : 0;
  return to_ns(std::max(compute_ns, memory_ns) + t.launch_latency_ns);
}

uint64_t copy_cost_ns(npusimMemcpyKind kind, double bytes) {
  const npusimChipTiming& t = *current_timing.load(std::memory_order_acquire);
  bytes = std::max(bytes, 0.0);
  switch (kind) {
    case npusimMemcpyHostToDevice: return to_ns(bytes / t.h2d_bandwidth * 1e9 + t.host_link_latency_ns);
    case npusimMemcpyDeviceToHost: return to_ns(bytes / t.d2h_bandwidth * 1e9 + t.host_link_latency_ns);
    // a device copy reads and writes every byte
    case npusimMemcpyDeviceToDevice: {
      if (bytes <= 0) return to_ns(t.launch_latency_ns);
      const npusimEfficiency& e = *current_efficiency.load(std::memory_order_acquire);
      double moved = 2 * bytes;
      return to_ns(moved / (t.memory_bandwidth * efficiency_at(e.memory[npusimOpClassOther], moved)) * 1e9 +
                   t.launch_latency_ns);
    }
    case npusimMemcpyHostToHost: return 0;
  }
  return 0;
}

bool activity_wanted() {
  return cost_model_on.load(std::memory_order_relaxed) || observer.load(std::memory_order_relaxed) != nullptr;
}

bool simulated_timing() { return simulated_timing_on.load(std::memory_order_relaxed); }

uint64_t host_time(int device) { return host_clock[device].load(std::memory_order_acquire); }

void host_waits_until(int device, uint64_t ns) { raise_clock(host_clock[device], ns); }

uint64_t device_busy_until(int device) { return busy_until[device].load(std::memory_order_acquire); }

void raise_clock(std::atomic<uint64_t>& clock, uint64_t ns) {
  uint64_t cur = clock.load(std::memory_order_acquire);
  while (cur < ns && !clock.compare_exchange_weak(cur, ns, std::memory_order_acq_rel)) {
  }
}

Interval advance(std::atomic<uint64_t>& clock, int device, uint64_t duration) {
  uint64_t host = host_time(device);
  uint64_t cur = clock.load(std::memory_order_acquire);
  Interval span;
  do {
    span.start_ns = std::max(cur, host);
    span.end_ns = span.start_ns + duration;
  } while (!clock.compare_exchange_weak(cur, span.end_ns, std::memory_order_acq_rel));
  raise_clock(busy_until[device], span.end_ns);
  return span;
}

void report(const npusimActivityRecord& record) {
  if (cost_model_on.load(std::memory_order_relaxed)) {
    std::lock_guard<std::mutex> lock(totals_mutex());
    Totals& t = totals()[record.name ? record.name : unnamed(record.kind)];
    t.kind = record.kind;
    t.count += 1;
    t.flops += record.flops;
    t.bytes += record.bytes;
    t.sim_ns += record.sim_end_ns - record.sim_start_ns;
  }
  if (const Observer* o = observer.load(std::memory_order_acquire)) o->fn(&record, o->user);
}

void reset_shared_clocks() {
  for (int d = 0; d < kMaxDevices; ++d) {
    host_clock[d].store(0);
    busy_until[d].store(0);
  }
  std::lock_guard<std::mutex> lock(totals_mutex());
  totals().clear();
}

}  // namespace npusim_rt

using namespace npusim_rt;

extern "C" {

npusimError_t npusimSetActivityCallback(npusimActivityFn_t fn, void* user) {
  // kept for the life of the process: a launch on another thread may still be calling the old one
  observer.store(fn ? new Observer{fn, user} : nullptr, std::memory_order_release);
  return npusimSuccess;
}

npusimError_t npusimSetSimulatedTiming(int on) {
  if (on != 0 && on != 1) return npusimErrorInvalidValue;
  simulated_timing_on.store(on == 1);
  return npusimSuccess;
}

npusimError_t npusimGetSimulatedTiming(int* on) {
  if (!on) return npusimErrorInvalidValue;
  *on = simulated_timing() ? 1 : 0;
  return npusimSuccess;
}

npusimError_t npusimSetChipTiming(const npusimChipTiming* timing) {
  if (!timing || !valid_timing(*timing)) return npusimErrorInvalidValue;
  current_timing.store(new npusimChipTiming(*timing), std::memory_order_release);
  return npusimSuccess;
}

npusimError_t npusimGetChipTiming(npusimChipTiming* timing) {
  if (!timing) return npusimErrorInvalidValue;
  *timing = *current_timing.load(std::memory_order_acquire);
  return npusimSuccess;
}

npusimError_t npusimSetEfficiency(const npusimEfficiency* efficiency) {
  if (!efficiency) {
    current_efficiency.store(&kRoofline, std::memory_order_release);
    return npusimSuccess;
  }
  for (int op = 0; op < npusimOpClassCount; ++op)
    if (!valid_curve(efficiency->compute[op]) || !valid_curve(efficiency->memory[op])) return npusimErrorInvalidValue;
  current_efficiency.store(new npusimEfficiency(*efficiency), std::memory_order_release);
  return npusimSuccess;
}

npusimError_t npusimGetEfficiency(npusimEfficiency* efficiency) {
  if (!efficiency) return npusimErrorInvalidValue;
  *efficiency = *current_efficiency.load(std::memory_order_acquire);
  return npusimSuccess;
}

npusimError_t npusimKernelTime(const npusimKernelCost* cost, uint64_t* ns) {
  if (!ns) return npusimErrorInvalidValue;
  *ns = kernel_cost_ns(cost);
  return npusimSuccess;
}

npusimError_t npusimSetCostModel(int on) {
  if (on != 0 && on != 1) return npusimErrorInvalidValue;
  cost_model_on.store(on == 1);
  return npusimSuccess;
}

int npusimCostModelEnabled(void) { return activity_wanted() || simulated_timing() ? 1 : 0; }

npusimError_t npusimGetOpStats(npusimOpStat* stats, size_t capacity, size_t* count) {
  if (!count || (capacity > 0 && !stats)) return npusimErrorInvalidValue;
  std::lock_guard<std::mutex> lock(totals_mutex());
  *count = totals().size();
  size_t i = 0;
  for (auto& [name, t] : totals()) {
    if (i == capacity) break;
    stats[i++] = npusimOpStat{name.c_str(), t.kind, t.count, t.flops, t.bytes, t.sim_ns};
  }
  return npusimSuccess;
}

}  // extern "C"
