// The runtime's copy function for large copies: memcpy spread over ATen's intra-op threads,
// so host<->device copies run as wide as the CPU's own copy_ instead of on one core.
// TensorIterator::for_each is used because its parallel_for is compiled into libtorch with
// ATen's threading backend (an inline at::parallel_for here would run serially).
#include <ATen/TensorIterator.h>
#include <ATen/ops/from_blob.h>

#include <cstring>

#include "npusim_runtime.h"

namespace torch_npu_sim {
namespace {

// Each thread copies at least this much: smaller shares cost more to hand out than they save.
constexpr int64_t kBytesPerThread = NPUSIM_HOST_COPY_MIN_BYTES / 2;

void parallel_memcpy(void* dst, const void* src, size_t count) {
  try {
    auto bytes = at::TensorOptions().dtype(at::kByte).device(at::kCPU);
    int64_t n = static_cast<int64_t>(count);
    at::Tensor out = at::from_blob(dst, {n}, bytes), in = at::from_blob(const_cast<void*>(src), {n}, bytes);
    at::TensorIterator iter = at::TensorIteratorConfig()
                                  .set_check_mem_overlap(false)
                                  .add_output(out)
                                  .add_const_input(in)
                                  .resize_outputs(false)
                                  .build();
    iter.for_each(
        [](char** data, const int64_t* strides, int64_t size0, int64_t size1) {
          for (int64_t i = 0; i < size1; ++i)
            std::memcpy(data[0] + i * strides[2], data[1] + i * strides[3], static_cast<size_t>(size0));
        },
        kBytesPerThread);
  } catch (...) {
    std::memcpy(dst, src, count);  // no iterator or no threads to be had: copy here, whole
  }
}

// Registered when the extension loads: the runtime only keeps the pointer.
const bool registered = [] {
  (void)npusimSetHostCopyFn(&parallel_memcpy);
  return true;
}();

}  // namespace
}  // namespace torch_npu_sim
