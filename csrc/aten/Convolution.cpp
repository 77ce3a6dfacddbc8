// Convolutions. ATen sends convolutions on a device it does not know to the backend's
// convolution_overrideable / convolution_backward_overrideable; here they run the CPU
// convolution (oneDNN or the native kernels) on zero-copy CPU aliases of npusim memory,
// with results allocated in npusim memory.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "aten/CpuAlias.h"
#include "simulation/CostOnly.h"
#include "core/Allocator.h"
#include "simulation/OpCost.h"

namespace torch_npu_sim {
namespace {

// The convolutions' simulated cost: flop_counter's conv formula; the backward charges one
// forward's FLOPs per gradient it computes.

at::Tensor convolution(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation, bool transposed,
                       c10::IntArrayRef output_padding, int64_t groups) {
  if (simulation::cost_only())  // the same arguments as aten::convolution, which has a Meta kernel
    return simulation::without_values<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                                 c10::IntArrayRef, c10::IntArrayRef, c10::IntArrayRef, bool,
                                                 c10::IntArrayRef, int64_t)>(
        "aten::convolution", "", input, weight, bias, stride, padding, dilation, transposed, output_padding, groups);
  at::Tensor b = bias.value_or(at::Tensor());
  auto device = common_npusim_device({&input, &weight, &b}, "convolution");
  at::Tensor out;
  simulation::LaunchCost cost("aten::convolution");
  {
    AllocateOnNpuSim here(device);
    launch_on_stream(device, [&] {
      out = at::convolution(cpu_view(input), cpu_view(weight), b.defined() ? std::optional<at::Tensor>(cpu_view(b)) : std::nullopt,
                            stride, padding, dilation, transposed, output_padding, groups);
      if (cost.wanted)
        cost.set(simulation::convolution_flops(input.sizes(), weight.sizes(), out.sizes(), transposed),
                 simulation::tensor_bytes({&input, &weight, &b, &out}), input.scalar_type());
    }, cost.get());
  }
  return adopt(out, device);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> convolution_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, bool transposed, c10::IntArrayRef output_padding,
    int64_t groups, std::array<bool, 3> output_mask) {
  if (simulation::cost_only()) {  // aten::convolution_backward has a Meta kernel
    int64_t channels = transposed ? weight.size(1) * groups : weight.size(0);
    return simulation::without_values<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, at::OptionalIntArrayRef, c10::IntArrayRef,
        c10::IntArrayRef, c10::IntArrayRef, bool, c10::IntArrayRef, int64_t, std::array<bool, 3>)>(
        "aten::convolution_backward", "", grad_output, input, weight, at::OptionalIntArrayRef(c10::IntArrayRef(channels)),
        stride, padding, dilation, transposed, output_padding, groups, output_mask);
  }
  auto device = common_npusim_device({&grad_output, &input, &weight}, "convolution_backward");
  // the bias has one entry per output channel
  int64_t out_channels = transposed ? weight.size(1) * groups : weight.size(0);
  std::vector<int64_t> bias_sizes{out_channels};
  std::tuple<at::Tensor, at::Tensor, at::Tensor> grads;
  simulation::LaunchCost cost("aten::convolution_backward");
  {
    AllocateOnNpuSim here(device);
    launch_on_stream(device, [&] {
      grads = at::convolution_backward(cpu_view(grad_output), cpu_view(input), cpu_view(weight), bias_sizes, stride, padding,
                                       dilation, transposed, output_padding, groups, output_mask);
      if (cost.wanted) {
        double forward = simulation::convolution_flops(input.sizes(), weight.sizes(), grad_output.sizes(), transposed);
        cost.set(forward * (int(output_mask[0]) + int(output_mask[1])),
                 simulation::tensor_bytes({&grad_output, &input, &weight, &std::get<0>(grads), &std::get<1>(grads), &std::get<2>(grads)}),
                 input.scalar_type());
      }
    }, cost.get());
  }
  return {adopt(std::get<0>(grads), device), adopt(std::get<1>(grads), device), adopt(std::get<2>(grads), device)};
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("convolution_overrideable", TORCH_FN(convolution));
  m.impl("convolution_backward_overrideable", TORCH_FN(convolution_backward));
}

}  // namespace torch_npu_sim
