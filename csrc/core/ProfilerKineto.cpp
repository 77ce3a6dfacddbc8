// npusim device activity for torch.profiler.profile(activities=[..., ProfilerActivity.PrivateUse1]).
//
// A kineto child profiler: while a session records, every op that launches work on an npusim
// stream (and whose launches no nested op already claimed) becomes one device kernel, timed by
// runtime events recorded around it on the op's stream (simulated or wall time, as
// npusimSetSimulatedTiming chooses). Kernels are linked to the op that launched them (kineto
// correlation ids), so key_averages() has device times, and they sit in the Chrome trace on
// one track per stream (pid = device, tid = stream); c10d collectives get a track of their own.
#include <ATen/record_function.h>
#include <c10/util/ApproximateClock.h>
#include <kineto/IActivityProfiler.h>
#include <kineto/libkineto.h>
#include <kineto/output_base.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/Runtime.h"
#include "core/Stream.h"

namespace torch_npu_sim {
namespace {

using libkineto::ActivityType;

// Collectives get their own track on each device, apart from the stream tracks.
constexpr int64_t kCollectiveTrack = int64_t{1} << 30;  // above any stream id; kineto keeps 32 bits

std::shared_ptr<void> record_event(npusimStream_t stream) {
  npusimEvent_t raw = nullptr;
  NPUSIM_CHECK(npusimEventCreateWithFlags(&raw, npusimEventDefault));
  std::shared_ptr<void> event(raw, [](void* e) { npusimEventDestroy(static_cast<npusimEvent_t>(e)); });
  NPUSIM_CHECK(npusimEventRecord(raw, stream));
  return event;
}

float elapsed_ms(const std::shared_ptr<void>& from, const std::shared_ptr<void>& to) {
  NPUSIM_CHECK(npusimEventSynchronize(static_cast<npusimEvent_t>(to.get())));
  float ms = 0;
  NPUSIM_CHECK(npusimEventElapsedTime(&ms, static_cast<npusimEvent_t>(from.get()),
                                      static_cast<npusimEvent_t>(to.get())));
  return ms;
}

bool is_collective(const char* name) { return std::string_view(name).starts_with("c10d::"); }

// The npusim device an op runs on: its first npusim tensor's (or device argument's); an op on
// npusim:1 called while npusim:0 is current launches on npusim:1. -1 when it has none.
int op_device(const at::RecordFunction& fn) {
  auto npusim_index = [](const c10::Device& device) -> int {
    if (device.type() != c10::DeviceType::PrivateUse1) return -1;
    return device.has_index() ? device.index() : current_device();
  };
  for (const c10::IValue& input : fn.inputs()) {
    int index = -1;
    if (input.isTensor())
      index = npusim_index(input.toTensor().device());
    else if (input.isDevice())
      index = npusim_index(input.toDevice());
    else if (input.isTensorList() && !input.toTensorList().empty())
      index = npusim_index(input.toTensorList().get(0).device());
    if (index >= 0) return index;
  }
  return -1;
}

struct KernelRecord {
  std::string name;
  int device;
  int64_t track;  // stream id, or kCollectiveTrack
  int64_t correlation;
  std::shared_ptr<void> start, end;
};

// The correlation id kineto pushes for the op being entered on this thread.
thread_local std::vector<int64_t> correlation_stack;

// An op being observed (handed back to on_exit by RecordFunction, so enter and exit always
// pair up): the launches seen when it began, and the op it is nested in on this thread.
struct OpFrame final : at::ObserverContext {
  OpFrame(int device, c10::Stream stream, uint64_t launches, std::shared_ptr<void> start, OpFrame* parent)
      : device(device), stream(stream), launches_at_entry(launches), start(std::move(start)), parent(parent) {}
  int device;
  c10::Stream stream;
  uint64_t launches_at_entry;
  uint64_t nested_launches = 0;  // claimed by ops nested inside this one
  std::shared_ptr<void> start;
  OpFrame* parent;
};
thread_local OpFrame* innermost_op = nullptr;

class Recorder {
 public:
  static Recorder& get() {
    static Recorder recorder;
    return recorder;
  }

  void start() {
    std::lock_guard<std::mutex> lock(mutex_);
    records_.clear();
    if (handle_ == 0)
      handle_ = at::addGlobalCallback(at::RecordFunctionCallback(&on_enter, &on_exit)
                                          .needsInputs(true)
                                          .scopes({at::RecordScope::FUNCTION, at::RecordScope::USER_SCOPE}));
  }

  void stop() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (handle_ != 0) at::removeCallback(handle_);
    handle_ = 0;
  }

  std::deque<KernelRecord> take() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::move(records_);
  }

 private:
  static std::unique_ptr<at::ObserverContext> on_enter(const at::RecordFunction& fn) {
    int count = 0;
    if (npusimGetDeviceCount(&count) != npusimSuccess || count == 0) return nullptr;
    int device = op_device(fn);
    if (device < 0) {
      // ops on CPU tensors only (a gloo collective, host math) are not npusim work; a user
      // scope (record_function) has no arguments and stands for the current device
      if (fn.scope() != at::RecordScope::USER_SCOPE) return nullptr;
      device = current_device();
    }
    c10::Stream stream = current_stream(static_cast<c10::DeviceIndex>(device));
    auto frame = std::make_unique<OpFrame>(device, stream, launch_count(static_cast<c10::DeviceIndex>(device)),
                                           record_event(runtime_stream(stream)), innermost_op);
    innermost_op = frame.get();
    return frame;
  }

  static void on_exit(const at::RecordFunction& fn, at::ObserverContext* context) {
    auto* frame = static_cast<OpFrame*>(context);
    if (!frame) return;
    innermost_op = frame->parent;
    uint64_t launched = launch_count(static_cast<c10::DeviceIndex>(frame->device)) - frame->launches_at_entry;
    if (frame->parent && frame->parent->device == frame->device) frame->parent->nested_launches += launched;
    const char* name = fn.name();
    // a collective is shown even when it launched nothing here (one rank, or work done by the
    // backend's own threads); other ops only when they launched work themselves
    if (!is_collective(name) && launched <= frame->nested_launches) return;
    // Global callbacks run before the profiler's own: on exit the op's correlation id is still
    // pushed (on entry it is not yet).
    int64_t correlation = correlation_stack.empty() ? 0 : correlation_stack.back();
    KernelRecord record{name, frame->device, is_collective(name) ? kCollectiveTrack : frame->stream.id(),
                        correlation, std::move(frame->start), record_event(runtime_stream(frame->stream))};
    auto& self = get();
    std::lock_guard<std::mutex> lock(self.mutex_);
    self.records_.push_back(std::move(record));
  }

  std::mutex mutex_;
  at::CallbackHandle handle_ = 0;
  std::deque<KernelRecord> records_;
};

class NpuSimSession final : public libkineto::IActivityProfilerSession {
 public:
  void start() override {
    Recorder::get().start();
    status_ = libkineto::TraceStatus::RECORDING;
  }
  void stop() override {
    Recorder::get().stop();
    status_ = libkineto::TraceStatus::PROCESSING;
  }
  std::vector<std::string> errors() override { return errors_; }

  void pushCorrelationId(uint64_t id) override { correlation_stack.push_back(static_cast<int64_t>(id)); }
  void popCorrelationId() override {
    if (!correlation_stack.empty()) correlation_stack.pop_back();
  }

  void processTrace(libkineto::ActivityLogger& logger) override {
    processTrace(logger, [](int32_t) -> const libkineto::ITraceActivity* { return nullptr; }, 0, 0);
  }

  void processTrace(libkineto::ActivityLogger& logger, libkineto::getLinkedActivityCallback linked,
                    int64_t start_ns, int64_t end_ns) override {
    buffer_ = std::make_unique<libkineto::CpuTraceBuffer>();
    buffer_->span = libkineto::TraceSpan(start_ns, end_ns, "npusim");
    auto records = Recorder::get().take();
    if (records.empty()) return;
    // Event times are relative; one reference event, recorded once everything before it has
    // run, anchors them to the profiler's clock.
    auto reference = record_event(runtime_stream(current_stream(records.front().device)));
    NPUSIM_CHECK(npusimDeviceSynchronize());
    int64_t reference_ns = c10::getTime();
    for (auto& record : records) {
      auto& activity = *buffer_->activities.emplace_back(std::make_unique<libkineto::GenericTraceActivity>(
          buffer_->span, ActivityType::CONCURRENT_KERNEL, record.name));
      activity.startTime = reference_ns - static_cast<int64_t>(elapsed_ms(record.start, reference) * 1e6);
      activity.endTime = activity.startTime + static_cast<int64_t>(elapsed_ms(record.start, record.end) * 1e6);
      activity.id = static_cast<int32_t>(record.correlation);
      activity.device = record.device;
      activity.resource = record.track;
      activity.linked = linked(static_cast<int32_t>(record.correlation));
      activity.addMetadataQuoted("device", std::to_string(record.device));
      if (record.track == kCollectiveTrack)
        activity.addMetadataQuoted("track", "collectives");
      else
        activity.addMetadataQuoted("stream", std::to_string(record.track));
            tracks_.insert({record.device, record.track});
      logger.handleActivity(activity);
    }
    // kineto asks a session for one device (getDeviceInfo: the first); name the others here
    std::set<int> devices;
    for (auto [device, track] : tracks_) devices.insert(device);
    for (int device : devices)
      if (device != *devices.begin()) logger.handleDeviceInfo(device_info(device), start_ns);
  }

  static libkineto::DeviceInfo device_info(int device) {
    return libkineto::DeviceInfo{device, device, "npusim " + std::to_string(device), "npusim"};
  }

  std::unique_ptr<libkineto::DeviceInfo> getDeviceInfo() override {
    return std::make_unique<libkineto::DeviceInfo>(device_info(tracks_.empty() ? 0 : tracks_.begin()->first));
  }

  std::vector<libkineto::ResourceInfo> getResourceInfos() override {
    std::vector<libkineto::ResourceInfo> infos;
    for (auto [device, track] : tracks_) {
      std::string name = track == kCollectiveTrack ? "npusim collectives" : "npusim stream " + std::to_string(track);
      infos.push_back(libkineto::ResourceInfo{track, track, device, name});
    }
    return infos;
  }

  std::unique_ptr<libkineto::CpuTraceBuffer> getTraceBuffer() override { return std::move(buffer_); }

 private:
  std::vector<std::string> errors_;
  std::unique_ptr<libkineto::CpuTraceBuffer> buffer_;
  std::set<std::pair<int, int64_t>> tracks_;
};

class NpuSimActivityProfiler final : public libkineto::IActivityProfiler {
 public:
  const std::string& name() const override { return name_; }
  const std::set<ActivityType>& availableActivities() const override { return activities_; }

  std::unique_ptr<libkineto::IActivityProfilerSession> configure(const std::set<ActivityType>& requested,
                                                                  const libkineto::Config&) override {
    // ProfilerActivity.PrivateUse1 asks for kernels; a CPU-only profile records nothing here.
    if (!requested.count(ActivityType::CONCURRENT_KERNEL)) return nullptr;
    return std::make_unique<NpuSimSession>();
  }
  std::unique_ptr<libkineto::IActivityProfilerSession> configure(int64_t, int64_t,
                                                                  const std::set<ActivityType>& requested,
                                                                  const libkineto::Config& config) override {
    return configure(requested, config);
  }

 private:
  std::string name_ = "npusim";
  std::set<ActivityType> activities_{ActivityType::CONCURRENT_KERNEL};
};

const bool registered = [] {
  libkineto::api().registerProfilerFactory([] { return std::make_unique<NpuSimActivityProfiler>(); });
  return true;
}();

}  // namespace
}  // namespace torch_npu_sim
