// npusim tensors are dense: strided, not quantized, not sparse, not nested. Whatever
// reaches npusim's sparse, quantized or nested dispatch keys fails with an error that
// names the limit (instead of "Could not run ... with arguments from the 'Sparsenpusim'
// backend", or a silently dense result).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace torch_npu_sim {
namespace {

template <const char* kKind>
void unsupported_layout(const c10::OperatorHandle& op, c10::DispatchKeySet, torch::jit::Stack*) {
  TORCH_CHECK_NOT_IMPLEMENTED(false, "npusim supports dense (strided) tensors only: ", op.schema().name(),
                              " was called with or for a ", kKind, " npusim tensor. Keep ", kKind,
                              " tensors on the CPU (convert with .to_dense() / .dequantize() before moving them)");
}

constexpr char kSparse[] = "sparse";
constexpr char kQuantized[] = "quantized";
constexpr char kNested[] = "nested";

}  // namespace

TORCH_LIBRARY_IMPL(_, SparsePrivateUse1, m) {
  m.fallback(torch::CppFunction::makeFromBoxedFunction<&unsupported_layout<kSparse>>());
}
TORCH_LIBRARY_IMPL(_, SparseCsrPrivateUse1, m) {
  m.fallback(torch::CppFunction::makeFromBoxedFunction<&unsupported_layout<kSparse>>());
}
TORCH_LIBRARY_IMPL(_, QuantizedPrivateUse1, m) {
  m.fallback(torch::CppFunction::makeFromBoxedFunction<&unsupported_layout<kQuantized>>());
}
TORCH_LIBRARY_IMPL(_, NestedTensorPrivateUse1, m) {
  m.fallback(torch::CppFunction::makeFromBoxedFunction<&unsupported_layout<kNested>>());
}

}  // namespace torch_npu_sim
