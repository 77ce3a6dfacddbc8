// Random kernels whose CPU versions read the CPU default generator directly (no
// generator argument), so the fallback could not give them npusim's RNG stream.
#include <ATen/ATen.h>
#include <torch/library.h>

namespace torch_npu_sim {
namespace {

// Same contract as CPU's native_dropout; the mask is drawn with bernoulli_, which takes
// the npusim generator, so torch.npusim.manual_seed makes dropout reproducible.
std::tuple<at::Tensor, at::Tensor> native_dropout(const at::Tensor& input, double p, std::optional<bool> train) {
  if (input.numel() == 0) return {input, at::empty_like(input, input.options().dtype(at::kBool))};
  if (train.has_value() && !*train) return {input.clone(), at::ones_like(input, input.options().dtype(at::kBool))};
  double keep = 1.0 - p;
  double scale = keep == 0 ? 0.0 : 1.0 / keep;
  at::Tensor mask = at::empty_like(input).bernoulli_(keep);
  at::Tensor output = input.mul(mask).mul_(scale);
  return {output, mask.to(at::kBool)};
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("native_dropout", TORCH_FN(native_dropout));
}

}  // namespace torch_npu_sim
