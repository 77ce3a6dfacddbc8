// Streams and events. Work runs at once on the calling thread, so a stream is an
// ordered, accounted queue that is always drained; events carry the time at which
// everything recorded before them finished.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "runtime_internal.h"
#include "sim_clock.h"

namespace { std::atomic<uint64_t> next_stream_id{1}; }

struct npusimStream_st {
  npusimStream_st(int device, int priority) : device(device), priority(priority) {}
  int device;
  int priority;
  std::atomic<uint64_t> launches{0};
  std::atomic<uint64_t> sim_ns{0};  // simulated clock: when the work launched so far ends
  const uint64_t id = next_stream_id.fetch_add(1);
};

// A record is read by other threads (query, elapsed time, device) while it may be
// re-recorded, so its fields change together under the event's own lock.
struct npusimEvent_st {
  unsigned flags;
  std::mutex mutex;
  int device = -1;
  bool recorded = false;
  int64_t time_ns = 0;
  uint64_t sim_ns = 0;  // the simulated time of the record
};

namespace npusim_rt {
namespace {

constexpr int kLeastPriority = 0;
constexpr int kGreatestPriority = -1;

enum class Kind : int { kStream = 0, kEvent = 1 };

std::mutex& handles_mutex() {
  static auto* m = new std::mutex();
  return *m;
}
// Live handles and what they are, so a stream passed as an event (or the reverse) is
// refused instead of being used as the wrong type.
std::unordered_map<const void*, Kind>& live_handles() {
  static auto* s = new std::unordered_map<const void*, Kind>();
  return *s;
}

// Bumped whenever a handle is destroyed, so a thread may trust the last handle it
// validated until then: every launch validates its stream, and this keeps that lock-free.
std::atomic<uint64_t> handle_generation{0};

bool is_live(const void* handle, Kind kind) {
  thread_local const void* last_valid[2] = {nullptr, nullptr};
  thread_local uint64_t last_generation[2] = {~uint64_t{0}, ~uint64_t{0}};
  const int k = static_cast<int>(kind);
  uint64_t generation = handle_generation.load(std::memory_order_acquire);
  if (handle == last_valid[k] && generation == last_generation[k]) return true;
  std::lock_guard<std::mutex> lock(handles_mutex());
  auto it = live_handles().find(handle);
  bool live = it != live_handles().end() && it->second == kind;
  if (live) {
    last_valid[k] = handle;
    last_generation[k] = generation;
  }
  return live;
}

bool live_event(npusimEvent_t event) { return event && is_live(event, Kind::kEvent); }

void add_handle(const void* handle, Kind kind) {
  std::lock_guard<std::mutex> lock(handles_mutex());
  live_handles().emplace(handle, kind);
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

npusimStream_t default_stream(int device) {
  auto& state = runtime().devices[device];
  if (npusimStream_t s = state.default_stream.load(std::memory_order_acquire)) return s;  // every launch asks
  static std::mutex m;
  std::lock_guard<std::mutex> lock(m);
  if (!state.default_stream.load()) {
    auto* s = new npusimStream_st(device, kLeastPriority);
    add_handle(s, Kind::kStream);
    state.default_stream.store(s, std::memory_order_release);
  }
  return state.default_stream.load();
}

struct Record {
  bool recorded;
  int64_t time_ns;
  uint64_t sim_ns;
  int device;
};

Record read_record(npusimEvent_t event) {
  std::lock_guard<std::mutex> lock(event->mutex);
  return Record{event->recorded, event->time_ns, event->sim_ns, event->device};
}

// NULL means the current device's default stream.
npusimError_t resolve(npusimStream_t* stream) {
  NPUSIM_RT_CHECK_INIT();
  if (*stream == nullptr) {
    if (!valid_device(current_device())) return npusimErrorInvalidDevice;
    *stream = default_stream(current_device());
    return npusimSuccess;
  }
  return is_live(*stream, Kind::kStream) ? npusimSuccess : npusimErrorInvalidResourceHandle;
}

// A device-side range must lie inside one allocation of the runtime.
bool device_range_ok(const void* ptr, size_t count) {
  npusimPointerAttributes attr;
  if (npusimPointerGetAttributes(&attr, ptr) != npusimSuccess) return false;
  if (attr.type != npusimMemoryTypeDevice) return false;
  auto offset = static_cast<const char*>(ptr) - static_cast<const char*>(attr.base);
  return static_cast<size_t>(offset) + count <= attr.size;
}

std::atomic<npusimHostCopyFn_t> host_copy{nullptr};

void copy_bytes(void* dst, const void* src, size_t count) {
  npusimHostCopyFn_t copy = host_copy.load(std::memory_order_acquire);
  if (copy && count >= NPUSIM_HOST_COPY_MIN_BYTES) copy(dst, src, count);
  else std::memcpy(dst, src, count);
}

// Runs `body`, then charges it to the stream (already resolved and counted) as one activity
// costing `cost` (read after the body ran: a kernel may fill it in once it knows its outputs,
// since work runs synchronously); the record goes out only when someone listens.
template <class Body>
void run_activity(npusimStream_t stream, npusimActivityKind kind, const npusimKernelCost* cost, Body&& body) {
  if (!activity_wanted()) {
    body();
    advance(stream->sim_ns, stream->device, kernel_cost_ns(cost));
    return;
  }
  uint64_t wall_start = wall_now_ns();
  body();
  uint64_t wall_end = wall_now_ns();
  Interval span = advance(stream->sim_ns, stream->device, kernel_cost_ns(cost));
  report(npusimActivityRecord{kind, stream->device, stream, stream->id, cost ? cost->name : nullptr,
                              cost ? cost->flops : 0, cost ? cost->bytes : 0, span.start_ns, span.end_ns,
                              wall_start, wall_end});
}

// as run_activity, for work whose duration is known up front (copies, charged activities)
template <class Body>
void run_timed_activity(npusimStream_t stream, npusimActivityKind kind, const char* name, double bytes,
                        uint64_t duration, Body&& body) {
  Interval span = advance(stream->sim_ns, stream->device, duration);
  if (!activity_wanted()) {
    body();
    return;
  }
  uint64_t wall_start = wall_now_ns();
  body();
  uint64_t wall_end = wall_now_ns();
  report(npusimActivityRecord{kind, stream->device, stream, stream->id, name, 0, bytes, span.start_ns,
                              span.end_ns, wall_start, wall_end});
}

std::atomic<bool> cost_only{false};

// Runs fn(arg) on the stream's device, with device memory accessible while it runs.
void run_host_fn(npusimStream_t stream, npusimHostFn_t fn, void* arg) {
  int& device = current_device();
  int saved = device;
  device = stream->device;
  npusimDeviceAccessScope device_access;  // protected memory (NPUSIM_PROTECT_MEMORY): open while this runs
  fn(arg);
  device = saved;
}

// Device work (a kernel, graph, copy or fill): charged in every mode, run unless cost-only.
void run_device_fn(npusimStream_t stream, npusimHostFn_t fn, void* arg) {
  if (!cost_only.load(std::memory_order_relaxed)) run_host_fn(stream, fn, arg);
}

npusimMemcpyKind copy_kind_of(npusimMemcpyKind kind) {
  return kind >= npusimMemcpyHostToHost && kind <= npusimMemcpyDeviceToDevice ? kind : npusimMemcpyHostToHost;
}

}  // namespace
}  // namespace npusim_rt

using namespace npusim_rt;

extern "C" {

npusimError_t npusimDeviceGetStreamPriorityRange(int* least, int* greatest) {
  if (!least || !greatest) return npusimErrorInvalidValue;
  *least = kLeastPriority;
  *greatest = kGreatestPriority;
  return npusimSuccess;
}

npusimError_t npusimStreamCreateWithPriority(npusimStream_t* stream, int device, int priority) {
  if (!stream) return npusimErrorInvalidValue;
  NPUSIM_RT_CHECK_INIT();
  if (!valid_device(device)) return npusimErrorInvalidDevice;
  // like real drivers, out-of-range priorities are clamped
  if (priority > kLeastPriority) priority = kLeastPriority;
  if (priority < kGreatestPriority) priority = kGreatestPriority;
  auto* s = new npusimStream_st(device, priority);
  add_handle(s, Kind::kStream);
  *stream = s;
  return npusimSuccess;
}

npusimError_t npusimStreamDestroy(npusimStream_t stream) {
  if (!stream) return npusimErrorInvalidResourceHandle;
  {
    std::lock_guard<std::mutex> lock(handles_mutex());
    auto it = live_handles().find(stream);
    if (it == live_handles().end() || it->second != Kind::kStream) return npusimErrorInvalidResourceHandle;
    // default streams live forever; checked before erasing, so no other thread ever
    // sees the default stream as an invalid handle
    if (runtime().devices[stream->device].default_stream.load() == stream)
      return npusimErrorInvalidResourceHandle;
    live_handles().erase(it);
    handle_generation.fetch_add(1, std::memory_order_acq_rel);
  }
  delete stream;
  return npusimSuccess;
}

npusimError_t npusimStreamGetDefault(npusimStream_t* stream, int device) {
  if (!stream) return npusimErrorInvalidValue;
  NPUSIM_RT_CHECK_INIT();
  if (!valid_device(device)) return npusimErrorInvalidDevice;
  *stream = default_stream(device);
  return npusimSuccess;
}

npusimError_t npusimStreamGetDevice(npusimStream_t stream, int* device) {
  if (!device) return npusimErrorInvalidValue;
  if (auto err = resolve(&stream)) return err;
  *device = stream->device;
  return npusimSuccess;
}

npusimError_t npusimStreamGetPriority(npusimStream_t stream, int* priority) {
  if (!priority) return npusimErrorInvalidValue;
  if (auto err = resolve(&stream)) return err;
  *priority = stream->priority;
  return npusimSuccess;
}

npusimError_t npusimStreamQuery(npusimStream_t stream) { return resolve(&stream); }

npusimError_t npusimStreamSynchronize(npusimStream_t stream) {
  if (auto err = resolve(&stream)) return err;
  host_waits_until(stream->device, stream->sim_ns.load());
  return npusimSuccess;
}

npusimError_t npusimStreamWaitEvent(npusimStream_t stream, npusimEvent_t event) {
  if (auto err = resolve(&stream)) return err;
  if (!live_event(event)) return npusimErrorInvalidResourceHandle;
  // the event's work is already complete; in simulated time the stream waits for it
  Record r = read_record(event);
  if (r.recorded) raise_clock(stream->sim_ns, r.sim_ns);
  return npusimSuccess;
}

npusimError_t npusimStreamGetSimTime(npusimStream_t stream, uint64_t* ns) {
  if (!ns) return npusimErrorInvalidValue;
  if (auto err = resolve(&stream)) return err;
  *ns = stream->sim_ns.load();
  return npusimSuccess;
}

npusimError_t npusimStreamChargeActivity(npusimStream_t stream, npusimActivityKind kind, const char* name,
                                         double bytes, uint64_t ns) {
  if (kind < npusimActivityKernel || kind > npusimActivityCollective) return npusimErrorInvalidValue;
  if (auto err = resolve(&stream)) return err;
  stream->launches.fetch_add(1, std::memory_order_relaxed);
  run_timed_activity(stream, kind, name, bytes, ns, [] {});
  return npusimSuccess;
}

npusimError_t npusimResetSimulatedTime(void) {
  NPUSIM_RT_CHECK_INIT();
  {
    std::lock_guard<std::mutex> lock(handles_mutex());
    for (auto& [handle, kind] : live_handles())
      if (kind == Kind::kStream) static_cast<npusimStream_t>(const_cast<void*>(handle))->sim_ns.store(0);
  }
  reset_shared_clocks();
  return npusimSuccess;
}

npusimError_t npusimStreamGetLaunchCount(npusimStream_t stream, uint64_t* count) {
  if (!count) return npusimErrorInvalidValue;
  if (auto err = resolve(&stream)) return err;
  *count = stream->launches.load();
  return npusimSuccess;
}

npusimError_t npusimDeviceSynchronize(void) {
  NPUSIM_RT_CHECK_INIT();
  int device = current_device();
  if (!valid_device(device)) return npusimErrorInvalidDevice;
  host_waits_until(device, device_busy_until(device));
  return npusimSuccess;
}

npusimError_t npusimLaunchKernel(npusimStream_t stream, npusimHostFn_t fn, void* arg, const npusimKernelCost* cost) {
  if (!fn) return npusimErrorInvalidValue;
  if (auto err = resolve(&stream)) return err;
  stream->launches.fetch_add(1, std::memory_order_relaxed);
  run_activity(stream, npusimActivityKernel, cost, [&] { run_device_fn(stream, fn, arg); });
  return npusimSuccess;
}

npusimError_t npusimLaunchGraph(npusimStream_t stream, npusimHostFn_t fn, void* arg, const char* name,
                                const npusimKernelCost* costs, size_t count) {
  if (!fn || (count > 0 && !costs)) return npusimErrorInvalidValue;
  if (auto err = resolve(&stream)) return err;
  stream->launches.fetch_add(1, std::memory_order_relaxed);
  const uint64_t latency = kernel_cost_ns(nullptr);
  uint64_t duration = latency;
  npusimKernelCost total{name ? name : "npusim::graph_replay", 0, 0, 0};
  for (size_t i = 0; i < count; ++i) {
    duration += kernel_cost_ns(&costs[i]) - latency;  // the latency is paid once, by the graph
    total.flops += costs[i].flops;
    total.bytes += costs[i].bytes;
  }
  run_timed_activity(stream, npusimActivityKernel, total.name, total.bytes, duration,
                     [&] { run_device_fn(stream, fn, arg); });
  return npusimSuccess;
}

npusimError_t npusimLaunchHostFunc(npusimStream_t stream, npusimHostFn_t fn, void* arg) {
  if (!fn) return npusimErrorInvalidValue;
  if (auto err = resolve(&stream)) return err;
  stream->launches.fetch_add(1, std::memory_order_relaxed);
  run_activity(stream, npusimActivityKernel, nullptr, [&] { run_host_fn(stream, fn, arg); });
  return npusimSuccess;
}

npusimError_t npusimLaunchCopy(npusimStream_t stream, npusimHostFn_t fn, void* arg, npusimMemcpyKind kind,
                               double bytes, int host_waits) {
  if (!fn || (host_waits != 0 && host_waits != 1)) return npusimErrorInvalidValue;
  if (auto err = resolve(&stream)) return err;
  stream->launches.fetch_add(1, std::memory_order_relaxed);
  kind = copy_kind_of(kind);
  run_timed_activity(stream, npusimActivityMemcpy, "memcpy", bytes, copy_cost_ns(kind, bytes),
                     [&] { run_device_fn(stream, fn, arg); });
  if (host_waits) host_waits_until(stream->device, stream->sim_ns.load());
  return npusimSuccess;
}

npusimError_t npusimMemcpyAsync(void* dst, const void* src, size_t count, npusimMemcpyKind kind,
                                npusimStream_t stream) {
  if (count == 0) return resolve(&stream);
  if (!dst || !src) return npusimErrorInvalidValue;
  if (auto err = resolve(&stream)) return err;
  bool src_device = kind == npusimMemcpyDeviceToHost || kind == npusimMemcpyDeviceToDevice;
  bool dst_device = kind == npusimMemcpyHostToDevice || kind == npusimMemcpyDeviceToDevice;
  if ((src_device && !device_range_ok(src, count)) || (dst_device && !device_range_ok(dst, count)))
    return npusimErrorInvalidDevicePointer;
  stream->launches.fetch_add(1, std::memory_order_relaxed);
  run_timed_activity(stream, npusimActivityMemcpy, "memcpy", static_cast<double>(count),
                     copy_cost_ns(copy_kind_of(kind), static_cast<double>(count)), [&] {
                 if (cost_only.load(std::memory_order_relaxed)) return;
                 npusimDeviceAccessScope device_access;  // protected memory (NPUSIM_PROTECT_MEMORY): open while this runs
                 copy_bytes(dst, src, count);
               });
  return npusimSuccess;
}

npusimError_t npusimSetCostOnly(int on) {
  if (on != 0 && on != 1) return npusimErrorInvalidValue;
  cost_only.store(on == 1);
  return npusimSuccess;
}

int npusimCostOnly(void) { return cost_only.load(std::memory_order_relaxed) ? 1 : 0; }

npusimError_t npusimSetHostCopyFn(npusimHostCopyFn_t copy) {
  host_copy.store(copy, std::memory_order_release);
  return npusimSuccess;
}

npusimError_t npusimMemcpy(void* dst, const void* src, size_t count, npusimMemcpyKind kind) {
  npusimStream_t stream = nullptr;
  if (auto err = npusimMemcpyAsync(dst, src, count, kind, stream)) return err;
  if (resolve(&stream) == npusimSuccess) host_waits_until(stream->device, stream->sim_ns.load());  // blocking
  return npusimSuccess;
}

npusimError_t npusimMemsetAsync(void* dst, int value, size_t count, npusimStream_t stream) {
  if (auto err = resolve(&stream)) return err;
  if (count == 0) return npusimSuccess;
  if (!device_range_ok(dst, count)) return npusimErrorInvalidDevicePointer;
  stream->launches.fetch_add(1, std::memory_order_relaxed);
  npusimKernelCost cost{"memset", 0, static_cast<double>(count), 0};  // a fill writes every byte
  run_activity(stream, npusimActivityMemset, &cost, [&] {
    if (cost_only.load(std::memory_order_relaxed)) return;
    npusimDeviceAccessScope device_access;  // protected memory (NPUSIM_PROTECT_MEMORY): open while this runs
    std::memset(dst, value, count);
  });
  return npusimSuccess;
}

npusimError_t npusimEventCreateWithFlags(npusimEvent_t* event, unsigned flags) {
  if (!event || (flags & ~1u)) return npusimErrorInvalidValue;
  auto* e = new npusimEvent_st{flags};
  add_handle(e, Kind::kEvent);
  *event = e;
  return npusimSuccess;
}

npusimError_t npusimEventDestroy(npusimEvent_t event) {
  {
    std::lock_guard<std::mutex> lock(handles_mutex());
    auto it = event ? live_handles().find(event) : live_handles().end();
    if (it == live_handles().end() || it->second != Kind::kEvent) return npusimErrorInvalidResourceHandle;
    live_handles().erase(it);
    handle_generation.fetch_add(1, std::memory_order_acq_rel);
  }
  delete event;
  return npusimSuccess;
}

npusimError_t npusimEventRecord(npusimEvent_t event, npusimStream_t stream) {
  if (!live_event(event)) return npusimErrorInvalidResourceHandle;
  if (auto err = resolve(&stream)) return err;
  int64_t now = now_ns();
  // an idle stream's record happens at the host's simulated time
  uint64_t sim = std::max(stream->sim_ns.load(), host_time(stream->device));
  std::lock_guard<std::mutex> lock(event->mutex);
  event->device = stream->device;
  event->recorded = true;
  event->time_ns = now;
  event->sim_ns = sim;
  return npusimSuccess;
}

npusimError_t npusimEventQuery(npusimEvent_t event) {
  if (!live_event(event)) return npusimErrorInvalidResourceHandle;
  return npusimSuccess;  // an unrecorded event counts as complete, as on real drivers
}

npusimError_t npusimEventSynchronize(npusimEvent_t event) {
  if (auto err = npusimEventQuery(event)) return err;
  Record r = read_record(event);
  if (r.recorded && valid_device(r.device)) host_waits_until(r.device, r.sim_ns);
  return npusimSuccess;
}

npusimError_t npusimEventElapsedTime(float* ms, npusimEvent_t start, npusimEvent_t end) {
  if (!ms) return npusimErrorInvalidValue;
  if (!live_event(start) || !live_event(end)) return npusimErrorInvalidResourceHandle;
  if ((start->flags | end->flags) & npusimEventDisableTiming) return npusimErrorTimingDisabled;
  // one lock at a time: start and end may be the same event
  Record a = read_record(start), b = read_record(end);
  if (!a.recorded || !b.recorded) return npusimErrorEventNotRecorded;
  if (simulated_timing())
    *ms = static_cast<float>((static_cast<double>(b.sim_ns) - static_cast<double>(a.sim_ns)) / 1e6);
  else
    *ms = static_cast<float>(b.time_ns - a.time_ns) / 1e6f;
  return npusimSuccess;
}

npusimError_t npusimEventGetDevice(npusimEvent_t event, int* device) {
  if (!device) return npusimErrorInvalidValue;
  if (!live_event(event)) return npusimErrorInvalidResourceHandle;
  std::lock_guard<std::mutex> lock(event->mutex);
  *device = event->device;
  return npusimSuccess;
}

}  // extern "C"
