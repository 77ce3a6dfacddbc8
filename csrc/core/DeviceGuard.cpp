// DeviceGuardImplInterface for npusim: devices, streams and events as c10 sees them.
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include "core/Allocator.h"
#include "core/Runtime.h"
#include "core/Stream.h"
#include "graphs/Capture.h"

namespace torch_npu_sim {
namespace {

using c10::Device;
using c10::DeviceIndex;
using c10::Stream;

struct NpuSimGuardImpl final : public c10::impl::DeviceGuardImplInterface {
  static constexpr c10::DeviceType kType = c10::DeviceType::PrivateUse1;

  c10::DeviceType type() const override { return kType; }

  Device exchangeDevice(Device d) const override {
    Device old = getDevice();
    if (old.index() != d.index()) setDevice(d);
    return old;
  }
  Device getDevice() const override { return Device(kType, current_device()); }
  void setDevice(Device d) const override {
    TORCH_CHECK(d.type() == kType, "Expected an npusim device, but got ", d);
    check_device_index(d.index());
    NPUSIM_CHECK(npusimSetDevice(d.index()));
  }
  void uncheckedSetDevice(Device d) const noexcept override { (void)npusimSetDevice(d.index()); }
  DeviceIndex deviceCount() const noexcept override {
    int count = 0;
    return npusimGetDeviceCount(&count) == npusimSuccess ? count : 0;
  }

  Stream getStream(Device d) const override { return current_stream(d.index()); }
  Stream getDefaultStream(Device d) const override { return default_stream(d.index()); }
  Stream getNewStream(Device d, int priority) const override {
    return stream_from_pool(d.index(), priority);
  }
  Stream getStreamFromGlobalPool(Device d, bool high_priority) const override {
    return stream_from_pool(d.index(), high_priority ? -1 : 0);
  }
  Stream exchangeStream(Stream s) const override {
    Stream old = current_stream(s.device_index());
    set_current_stream(s);
    return old;
  }
  bool queryStream(const Stream& s) const override {
    graphs::check_sync_allowed("querying a capturing stream", s.device_index(), runtime_stream(s), nullptr);
    return npusimStreamQuery(runtime_stream(s)) == npusimSuccess;
  }
  void synchronizeStream(const Stream& s) const override {
    graphs::check_sync_allowed("synchronizing a stream", s.device_index(), runtime_stream(s), nullptr);
    NPUSIM_CHECK(npusimStreamSynchronize(runtime_stream(s)));
  }
  void synchronizeDevice(DeviceIndex device) const override {
    check_device_index(device);
    graphs::check_sync_allowed("synchronizing the device", device, nullptr, nullptr);
    int saved = current_device();
    NPUSIM_CHECK(npusimSetDevice(device));
    npusimError_t err = npusimDeviceSynchronize();
    NPUSIM_CHECK(npusimSetDevice(saved));
    NPUSIM_CHECK(err);
  }

  void record(void** event, const Stream& s, DeviceIndex device, c10::EventFlag flag) const override {
    TORCH_CHECK(device == -1 || device == s.device_index(), "Event device index ", device,
                " does not match the recording stream's device index ", s.device_index());
    if (!*event) {
      unsigned flags = flag == c10::EventFlag::BACKEND_DEFAULT ? npusimEventDefault
                                                                : npusimEventDisableTiming;
      NPUSIM_CHECK(npusimEventCreateWithFlags(reinterpret_cast<npusimEvent_t*>(event), flags));
    }
    NPUSIM_CHECK(npusimEventRecord(static_cast<npusimEvent_t>(*event), runtime_stream(s)));
    graphs::note_event_record(*event, s);
  }
  void block(void* event, const Stream& s) const override {
    if (!event) return;  // never recorded: nothing to wait for, as in CUDA
    graphs::note_event_wait(event, s);
    NPUSIM_CHECK(npusimStreamWaitEvent(runtime_stream(s), static_cast<npusimEvent_t>(event)));
  }
  bool queryEvent(void* event) const override {
    if (!event) return true;
    graphs::check_sync_allowed("querying an event recorded during capture", -1, nullptr, event);
    npusimError_t err = npusimEventQuery(static_cast<npusimEvent_t>(event));
    if (err == npusimErrorNotReady) return false;
    NPUSIM_CHECK(err);
    return true;
  }
  void synchronizeEvent(void* event) const override {
    if (event) graphs::check_sync_allowed("synchronizing an event recorded during capture", -1, nullptr, event);
    if (event) NPUSIM_CHECK(npusimEventSynchronize(static_cast<npusimEvent_t>(event)));
  }
  void destroyEvent(void* event, DeviceIndex) const noexcept override {
    if (event) (void)npusimEventDestroy(static_cast<npusimEvent_t>(event));
  }
  double elapsedTime(void* start, void* end, DeviceIndex) const override {
    TORCH_CHECK(start && end, "Both events must be recorded before calculating elapsed time.");
    float ms = 0;
    npusimError_t err = npusimEventElapsedTime(&ms, static_cast<npusimEvent_t>(start),
                                               static_cast<npusimEvent_t>(end));
    TORCH_CHECK(err != npusimErrorTimingDisabled,
                "Both events must be created with argument 'enable_timing=True'.");
    TORCH_CHECK(err != npusimErrorEventNotRecorded,
                "Both events must be recorded before calculating elapsed time.");
    NPUSIM_CHECK(err);
    return ms;
  }

  void recordDataPtrOnStream(const c10::DataPtr& data_ptr, const Stream& s) const override {
    caching_allocator().recordStream(data_ptr, s);
  }

  // torch.accelerator.get_device_capability: every dtype but the quantized ones, which
  // npusim tensors cannot be.
  c10::DeviceCapability getDeviceCapability(Device d) const override {
    if (d.has_index()) check_device_index(d.index());
    c10::DeviceCapability cap;
    auto& types = cap.capability_data.supported_scalar_types;
    types.has_QInt8 = types.has_QUInt8 = types.has_QInt32 = types.has_QUInt4x2 = types.has_QUInt2x4 = 0;
    return cap;
  }
};

C10_REGISTER_GUARD_IMPL(PrivateUse1, NpuSimGuardImpl);

}  // namespace
}  // namespace torch_npu_sim
