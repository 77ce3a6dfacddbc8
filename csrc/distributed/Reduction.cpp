#pragma GCC optimize("O3")  // element-wise loops: let the compiler vectorize them
#include "distributed/Reduction.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstring>
#include <vector>
#include <type_traits>

namespace torch_npu_sim::dist {
namespace {

enum : uint8_t { kSum = 0, kAvg = 1, kProduct = 2, kMin = 3, kMax = 4, kBand = 5, kBor = 6, kBxor = 7, kPremulSum = 8 };

template <typename T, typename F>
void apply(void* dst, const void* src, size_t n, F f) {
  T* __restrict__ d = static_cast<T*>(dst);
  const T* __restrict__ s = static_cast<const T*>(src);
  for (size_t i = 0; i < n; ++i) d[i] = f(d[i], s[i]);
}

template <typename T>
void combine_typed(void* dst, const void* src, size_t n, uint8_t op) {
  if constexpr (std::is_same_v<T, bool>) {
    switch (op) {
      case kSum: case kAvg: case kPremulSum: case kMax: case kBor:
        return apply<T>(dst, src, n, [](T a, T b) { return a || b; });
      case kProduct: case kMin: case kBand:
        return apply<T>(dst, src, n, [](T a, T b) { return a && b; });
      case kBxor:
        return apply<T>(dst, src, n, [](T a, T b) { return a != b; });
    }
  } else {
    switch (op) {
      case kSum: case kAvg: case kPremulSum:
        return apply<T>(dst, src, n, [](T a, T b) { return static_cast<T>(a + b); });
      case kProduct:
        return apply<T>(dst, src, n, [](T a, T b) { return static_cast<T>(a * b); });
      case kMin:
        return apply<T>(dst, src, n, [](T a, T b) { return b < a ? b : a; });
      case kMax:
        return apply<T>(dst, src, n, [](T a, T b) { return a < b ? b : a; });
    }
    if constexpr (std::is_integral_v<T>) {
      switch (op) {
        case kBand: return apply<T>(dst, src, n, [](T a, T b) { return static_cast<T>(a & b); });
        case kBor: return apply<T>(dst, src, n, [](T a, T b) { return static_cast<T>(a | b); });
        case kBxor: return apply<T>(dst, src, n, [](T a, T b) { return static_cast<T>(a ^ b); });
      }
    }
  }
  TORCH_CHECK(false, "npusim: reduce op ", int(op), " is not supported for this dtype");
}

template <typename T>
void average_typed(void* data, size_t n, int world) {
  T* d = static_cast<T*>(data);
  if constexpr (std::is_same_v<T, bool>) {
    return;  // the OR of the inputs: the only bool "average" that stays a bool
  } else if constexpr (std::is_integral_v<T>) {
    for (size_t i = 0; i < n; ++i) d[i] = static_cast<T>(d[i] / world);
  } else {
    for (size_t i = 0; i < n; ++i) d[i] = static_cast<T>(static_cast<float>(d[i]) / world);
  }
}

template <>
void average_typed<double>(void* data, size_t n, int world) {
  auto* d = static_cast<double*>(data);
  for (size_t i = 0; i < n; ++i) d[i] /= world;
}

#define NPUSIM_DIST_DTYPES(_)      \
  _(float, Float)                  \
  _(double, Double)                \
  _(c10::Half, Half)               \
  _(c10::BFloat16, BFloat16)       \
  _(int8_t, Char)                  \
  _(uint8_t, Byte)                 \
  _(int16_t, Short)                \
  _(int32_t, Int)                  \
  _(int64_t, Long)                 \
  _(bool, Bool)

}  // namespace

void combine(void* dst, const void* src, size_t numel, c10::ScalarType dtype, uint8_t op) {
  switch (dtype) {
#define CASE(T, name) \
  case c10::ScalarType::name: return combine_typed<T>(dst, src, numel, op);
    NPUSIM_DIST_DTYPES(CASE)
#undef CASE
    default: TORCH_CHECK(false, "npusim: cannot reduce tensors of dtype ", dtype);
  }
}

void reduce_sources(void* dst, const void* const* srcs, int n, size_t numel, c10::ScalarType dtype, uint8_t op) {
  constexpr size_t kBlockBytes = 16 << 10;  // stays in L1 while every source is combined into it
  thread_local std::vector<uint8_t> block(kBlockBytes);
  const size_t esize = c10::elementSize(dtype), per_block = kBlockBytes / esize;
  auto at = [esize](const void* base, size_t i) { return static_cast<const uint8_t*>(base) + i * esize; };
  for (size_t i = 0; i < numel; i += per_block) {
    const size_t len = std::min(per_block, numel - i);
    std::memcpy(block.data(), at(srcs[0], i), len * esize);
    for (int k = 1; k < n; ++k) combine(block.data(), at(srcs[k], i), len, dtype, op);
    std::memcpy(static_cast<uint8_t*>(dst) + i * esize, block.data(), len * esize);
  }
}

void finalize_average(void* data, size_t numel, c10::ScalarType dtype, int world) {
  switch (dtype) {
#define CASE(T, name) \
  case c10::ScalarType::name: return average_typed<T>(data, numel, world);
    NPUSIM_DIST_DTYPES(CASE)
#undef CASE
    default: TORCH_CHECK(false, "npusim: cannot average tensors of dtype ", dtype);
  }
}

const char* unsupported_reason(c10::ScalarType dtype, uint8_t op) {
  switch (dtype) {
#define CASE(T, name) case c10::ScalarType::name:
    NPUSIM_DIST_DTYPES(CASE)
#undef CASE
    break;
    default: return "this dtype cannot be reduced (supported: float64/32/16, bfloat16, int8-int64, uint8, bool)";
  }
  bool integral = c10::isIntegralType(dtype, /*includeBool=*/true);
  if ((op == kBand || op == kBor || op == kBxor) && !integral)
    return "bitwise reductions (BAND, BOR, BXOR) are only defined for integer and bool tensors";
  if (op == kPremulSum && !c10::isFloatingType(dtype))
    return "PREMUL_SUM is only defined for floating-point tensors";
  if (op > kPremulSum) return "unknown reduce op";
  return nullptr;
}

}  // namespace torch_npu_sim::dist
