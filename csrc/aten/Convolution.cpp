// Convolutions. ATen sends convolutions on a device it does not know to the backend's
// convolution_overrideable / convolution_backward_overrideable; here they run the CPU
// convolution (oneDNN or the native kernels) on zero-copy CPU aliases of npusim memory,
// with results allocated in npusim memory.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "aten/CpuAlias.h"
#include "core/Allocator.h"

namespace torch_npu_sim {
namespace {

c10::DeviceIndex common_device(std::initializer_list<const at::Tensor*> tensors, const char* op) {
  c10::DeviceIndex device = -1;
  for (const at::Tensor* t : tensors) {
    if (!t || !t->defined()) continue;
    TORCH_CHECK(t->device().type() == c10::DeviceType::PrivateUse1,
                "Expected all tensors to be on the same device, but found at least two devices, npusim and ",
                t->device(), "! (when checking arguments for ", op, ")");
    if (device < 0) device = t->device().index();
    TORCH_CHECK(t->device().index() == device, "Expected all tensors to be on the same device, but found at least two devices, ",
                c10::Device(c10::DeviceType::PrivateUse1, device), " and ", t->device(), "! (when checking arguments for ", op, ")");
  }
  return device;
}

at::Tensor cpu_view(const at::Tensor& t) { return t.defined() ? cpu_alias(t) : t; }
at::Tensor adopt(const at::Tensor& t, c10::DeviceIndex device) { return t.defined() ? adopt_as_npusim(t, device) : t; }

at::Tensor convolution(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation, bool transposed,
                       c10::IntArrayRef output_padding, int64_t groups) {
  at::Tensor b = bias.value_or(at::Tensor());
  auto device = common_device({&input, &weight, &b}, "convolution");
  at::Tensor out;
  {
    AllocateOnNpuSim here(device);
    launch_on_stream(device, [&] {
      out = at::convolution(cpu_view(input), cpu_view(weight), b.defined() ? std::optional<at::Tensor>(cpu_view(b)) : std::nullopt,
                            stride, padding, dilation, transposed, output_padding, groups);
    });
  }
  return adopt(out, device);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> convolution_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, bool transposed, c10::IntArrayRef output_padding,
    int64_t groups, std::array<bool, 3> output_mask) {
  auto device = common_device({&grad_output, &input, &weight}, "convolution_backward");
  // the bias has one entry per output channel
  int64_t out_channels = transposed ? weight.size(1) * groups : weight.size(0);
  std::vector<int64_t> bias_sizes{out_channels};
  std::tuple<at::Tensor, at::Tensor, at::Tensor> grads;
  {
    AllocateOnNpuSim here(device);
    launch_on_stream(device, [&] {
      grads = at::convolution_backward(cpu_view(grad_output), cpu_view(input), cpu_view(weight), bias_sizes, stride, padding,
                                       dilation, transposed, output_padding, groups, output_mask);
    });
  }
  return {adopt(std::get<0>(grads), device), adopt(std::get<1>(grads), device), adopt(std::get<2>(grads), device)};
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("convolution_overrideable", TORCH_FN(convolution));
  m.impl("convolution_backward_overrideable", TORCH_FN(convolution_backward));
}

}  // namespace torch_npu_sim
