// The PrivateUse1 profiler stubs: what torch.autograd.profiler.profile(use_device="npusim")
// (the legacy, marker-based path) calls around every op. Each op gets a runtime event
// recorded on the current stream at entry and at exit; their elapsed time (simulated or
// wall, as npusimSetSimulatedTiming chooses) becomes the op's device time. Registered when
// the extension loads, so the profiler never reports "PrivateUse1 used in profiler but not
// enabled" (which it did, throwing and catching per op).
#include <c10/util/ApproximateClock.h>
#include <torch/csrc/profiler/stubs/base.h>

#include "core/Runtime.h"
#include "core/Stream.h"

namespace torch_npu_sim {
namespace {

using torch::profiler::impl::ProfilerVoidEventStub;

npusimEvent_t as_event(const ProfilerVoidEventStub* stub) {
  return static_cast<npusimEvent_t>(stub->get());
}

struct NpuSimProfilerStubs final : public torch::profiler::impl::ProfilerStubs {
  void record(c10::DeviceIndex* device, ProfilerVoidEventStub* event,
              int64_t* cpu_ns) const override {
    auto index = static_cast<c10::DeviceIndex>(current_device());
    if (device) *device = index;
    npusimEvent_t raw = nullptr;
    NPUSIM_CHECK(npusimEventCreateWithFlags(&raw, npusimEventDefault));
    *event = std::shared_ptr<void>(raw, [](void* e) { npusimEventDestroy(static_cast<npusimEvent_t>(e)); });
    if (cpu_ns) *cpu_ns = c10::getTime();
    NPUSIM_CHECK(npusimEventRecord(raw, runtime_stream(current_stream(index))));
  }

  // Microseconds between two recorded events (the profiler's unit for device time).
  float elapsed(const ProfilerVoidEventStub* start, const ProfilerVoidEventStub* end) const override {
    NPUSIM_CHECK(npusimEventSynchronize(as_event(start)));
    NPUSIM_CHECK(npusimEventSynchronize(as_event(end)));
    float ms = 0;
    NPUSIM_CHECK(npusimEventElapsedTime(&ms, as_event(start), as_event(end)));
    return ms * 1000.0f;
  }

  // npusim has no external range annotator (NVTX-like); markers and ranges are no-ops.
  void mark(const char*) const override {}
  void rangePush(const char*) const override {}
  void rangePop() const override {}

  bool enabled() const override { return true; }

  void onEachDevice(std::function<void(int)> op) const override {
    int previous = current_device();
    int count = device_count();
    for (int device = 0; device < count; ++device) {
      NPUSIM_CHECK(npusimSetDevice(device));
      op(device);
    }
    NPUSIM_CHECK(npusimSetDevice(previous));
  }

  void synchronize() const override { NPUSIM_CHECK(npusimDeviceSynchronize()); }
};

// Registered at load time: the stubs must be in place before any profiler session starts.
const bool registered = [] {
  static NpuSimProfilerStubs stubs;
  torch::profiler::impl::registerPrivateUse1Methods(&stubs);
  return true;
}();

}  // namespace
}  // namespace torch_npu_sim
