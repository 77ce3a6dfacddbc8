// scaled_dot_product_attention: ATen asks a device-specific stub which fused kernel to
// use, and without one npusim would take the unfused math path. npusim answers as the
// CPU does for the same inputs, so attention runs the CPU's fused kernels
// (_scaled_dot_product_flash_attention_for_cpu and its backward) through the fallback.
#include <ATen/ATen.h>
#include <ATen/native/DispatchStub.h>
#include <ATen/native/transformers/attention.h>
#include <c10/core/impl/LocalDispatchKeySet.h>


namespace torch_npu_sim {
namespace {

// The CPU's choice reads metadata only (dtypes, sizes, strides, requires_grad: the flash kernel
// has no gradient for a mask, so a mask that requires grad takes the math path). It gets a
// CPU tensor of the same geometry over no memory, so it also answers for tensors that have no
// bytes: torch.compile's fake tensors and cost-only mode's.
at::Tensor view_for_cpu(const at::Tensor& t) {
  if (!t.defined() || t.device().type() != c10::DeviceType::PrivateUse1) return t;
  c10::Storage no_memory(c10::Storage::use_byte_size_t(), 0, c10::DataPtr(nullptr, c10::Device(c10::kCPU)),
                         /*allocator=*/nullptr, /*resizable=*/false);
  auto alias = at::detail::make_tensor<c10::TensorImpl>(std::move(no_memory), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                                        t.dtype());
  alias.unsafeGetTensorImpl()->set_sizes_and_strides(t.sym_sizes(), t.sym_strides(), t.sym_storage_offset());
  if (t.requires_grad()) alias.set_requires_grad(true);
  return alias;
}

int64_t fused_sdp_choice(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                         const std::optional<at::Tensor>& attn_mask, double dropout_p, bool is_causal,
                         std::optional<double> scale, bool enable_gqa) {
  std::optional<at::Tensor> mask;
  if (attn_mask.has_value() && attn_mask->defined()) mask = view_for_cpu(*attn_mask);
  // straight to the CPU's kernel: under torch.compile a fake-tensor mode (Python dispatch)
  // would intercept the call and refuse its CPU arguments
  c10::impl::ExcludeDispatchKeyGuard no_python(
      c10::DispatchKeySet({c10::DispatchKey::Python, c10::DispatchKey::PythonTLSSnapshot}));
  return at::_fused_sdp_choice(view_for_cpu(query), view_for_cpu(key), view_for_cpu(value), mask, dropout_p,
                               is_causal, scale, enable_gqa);
}

}  // namespace
}  // namespace torch_npu_sim

namespace at::native {
REGISTER_PRIVATEUSE1_DISPATCH(_fused_sdp_choice_stub, &torch_npu_sim::fused_sdp_choice)
}
