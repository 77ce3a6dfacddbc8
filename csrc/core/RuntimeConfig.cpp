// How an unusable npusim is reported: an invalid NPUSIM_* configuration or zero devices
// leave PyTorch working; only using npusim raises, naming the variable and its value.
#include <c10/util/Exception.h>

#include "core/Runtime.h"

namespace torch_npu_sim {

namespace {
constexpr const char* kUnusable =
    " (PyTorch itself works as usual; fix or unset the variable to use npusim devices)";
}

void throw_runtime_error(npusimError_t error, const char* call) {
  if (error == npusimErrorInvalidConfiguration) {
    const char* config = npusimGetConfigurationError();
    TORCH_CHECK(false, "npusim is unavailable: ", config ? config : npusimGetErrorString(error), kUnusable);
  }
  TORCH_CHECK(false, "npusim runtime error: ", npusimGetErrorString(error), " (in ", call, ")");
}

void check_available() {
  int count = 0;
  NPUSIM_CHECK(npusimGetDeviceCount(&count));
  TORCH_CHECK(count > 0, "npusim is unavailable: NPUSIM_DEVICE_COUNT=0 configures no devices", kUnusable);
}

}  // namespace torch_npu_sim
