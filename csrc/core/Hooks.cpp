// PrivateUse1HooksInterface: how ATen asks "is npusim there, which device, which generator,
// is this pointer pinned, resize this storage".
#include <ATen/detail/PrivateUse1HooksInterface.h>

#include "core/Allocator.h"
#include "core/Generator.h"
#include "core/Hooks.h"
#include "core/Runtime.h"

namespace torch_npu_sim {
namespace {

struct NpuSimHooks final : public at::PrivateUse1HooksInterface {
  void init() const override { (void)device_count(); }  // surfaces configuration errors
  bool isBuilt() const override { return true; }
  bool isAvailable() const override {
    int count = 0;
    return npusimGetDeviceCount(&count) == npusimSuccess && count > 0;
  }
  bool hasPrimaryContext(c10::DeviceIndex device) const override {
    int count = 0;
    return npusimGetDeviceCount(&count) == npusimSuccess && device >= 0 && device < count;
  }
  c10::DeviceIndex deviceCount() const override {
    int count = 0;
    return npusimGetDeviceCount(&count) == npusimSuccess ? static_cast<c10::DeviceIndex>(count) : 0;
  }
  c10::DeviceIndex getCurrentDevice() const override {
    return static_cast<c10::DeviceIndex>(current_device());
  }
  void setCurrentDevice(c10::DeviceIndex device) const override {
    check_device_index(device);
    NPUSIM_CHECK(npusimSetDevice(device));
  }
  c10::DeviceIndex exchangeDevice(c10::DeviceIndex device) const override {
    auto old = getCurrentDevice();
    if (device != old) setCurrentDevice(device);
    return old;
  }
  c10::DeviceIndex maybeExchangeDevice(c10::DeviceIndex device) const override {
    return exchangeDevice(device);
  }
  const at::Generator& getDefaultGenerator(c10::DeviceIndex device) const override {
    return default_generator(device);
  }
  at::Generator getNewGenerator(c10::DeviceIndex device) const override {
    return new_generator(device);
  }
  at::Device getDeviceFromPtr(void* data) const override {
    npusimPointerAttributes attr;
    NPUSIM_CHECK(npusimPointerGetAttributes(&attr, data));
    TORCH_CHECK(attr.type == npusimMemoryTypeDevice, "The pointer ", data,
                " does not point to npusim device memory");
    return at::Device(c10::DeviceType::PrivateUse1, static_cast<c10::DeviceIndex>(attr.device));
  }
  bool isPinnedPtr(const void* data) const override { return is_pinned_ptr(data); }
  at::Allocator* getPinnedMemoryAllocator() const override { return host_allocator(); }
  void resizePrivateUse1Bytes(const c10::Storage& storage, size_t new_bytes) const override {
    resize_storage_bytes(storage.unsafeGetStorageImpl(), new_bytes);
  }
};

}  // namespace

void register_hooks() {
  static NpuSimHooks hooks;
  static bool registered = [] {
    at::RegisterPrivateUse1HooksInterface(&hooks);
    return true;
  }();
  (void)registered;
}

}  // namespace torch_npu_sim
