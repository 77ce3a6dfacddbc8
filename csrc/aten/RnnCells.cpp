// Fused LSTM and GRU cells. ATen's RNN code (nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell)
// calls _thnn_fused_lstm_cell / _thnn_fused_gru_cell (and their backward ops) for
// PrivateUse1 tensors, as it does for CUDA, and those ops have no CPU kernel for the
// fallback to run. These kernels compute the cell's pointwise part on zero-copy CPU
// aliases with results in npusim memory, with CUDA's contract: the same outputs, and a
// workspace (activated gates) that the matching backward consumes.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "aten/CpuAlias.h"
#include "simulation/CostOnly.h"
#include "core/Allocator.h"

namespace torch_npu_sim {
namespace {

// Runs fn on the device's current stream with every CPU allocation made in npusim memory.
template <typename Fn>
void run_on_device(c10::DeviceIndex device, Fn&& fn) {
  TORCH_CHECK_NOT_IMPLEMENTED(!simulation::cost_only(),
                              "npusim cost-only mode has no cost for the fused LSTM/GRU cells yet; run them with values");
  AllocateOnNpuSim here(device);
  launch_on_stream(device, fn);
}

void check_gates(const at::Tensor& input_gates, const at::Tensor& hidden_gates, const at::Tensor& state,
                 int64_t gates, const char* op) {
  TORCH_CHECK(input_gates.dim() == 2 && input_gates.sizes() == hidden_gates.sizes(), op,
              ": input_gates and hidden_gates must be 2-D and of one shape, got ", input_gates.sizes(), " and ",
              hidden_gates.sizes());
  TORCH_CHECK(state.dim() == 2 && state.size(0) == input_gates.size(0) && state.size(1) * gates == input_gates.size(1),
              op, ": the state of shape ", state.sizes(), " does not match gates of shape ", input_gates.sizes());
}

void check_bias(const at::Tensor& bias, const at::Tensor& gates, const char* op) {
  if (!bias.defined()) return;
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == gates.size(1), op, ": bias of shape ", bias.sizes(),
              " does not match gates of shape ", gates.sizes());
}

at::Tensor or_undefined(const std::optional<at::Tensor>& t) { return t.has_value() ? *t : at::Tensor(); }

// Gates pre-activation: input_gates + hidden_gates (+ both biases).
at::Tensor summed_gates(const at::Tensor& ig, const at::Tensor& hg, const at::Tensor& ib, const at::Tensor& hb) {
  at::Tensor g = ig + hg;
  if (ib.defined()) g.add_(ib);
  if (hb.defined()) g.add_(hb);
  return g;
}

// ------------------------------------------------------------------------------ LSTM

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_cell(const at::Tensor& input_gates, const at::Tensor& hidden_gates,
                                                         const at::Tensor& cx, const std::optional<at::Tensor>& input_bias,
                                                         const std::optional<at::Tensor>& hidden_bias) {
  at::Tensor ib = or_undefined(input_bias), hb = or_undefined(hidden_bias);
  auto device = common_npusim_device({&input_gates, &hidden_gates, &cx, &ib, &hb}, "_thnn_fused_lstm_cell");
  check_gates(input_gates, hidden_gates, cx, 4, "_thnn_fused_lstm_cell");
  check_bias(ib, input_gates, "_thnn_fused_lstm_cell");
  check_bias(hb, input_gates, "_thnn_fused_lstm_cell");
  at::Tensor hy, cy, workspace;
  run_on_device(device, [&] {
    at::Tensor g = summed_gates(cpu_view(input_gates), cpu_view(hidden_gates), cpu_view(ib), cpu_view(hb));
    auto chunks = g.chunk(4, 1);  // input, forget, cell, output
    at::Tensor i = chunks[0].sigmoid(), f = chunks[1].sigmoid(), c = chunks[2].tanh(), o = chunks[3].sigmoid();
    cy = f * cpu_view(cx) + i * c;
    hy = o * cy.tanh();
    workspace = at::cat({i, f, c, o}, 1);
  });
  return {adopt(hy, device), adopt(cy, device), adopt(workspace, device)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_cell_backward_impl(const std::optional<at::Tensor>& grad_hy,
                                                                       const std::optional<at::Tensor>& grad_cy,
                                                                       const at::Tensor& cx, const at::Tensor& cy,
                                                                       const at::Tensor& workspace, bool has_bias) {
  at::Tensor ghy = or_undefined(grad_hy), gcy = or_undefined(grad_cy);
  if (!ghy.defined() && !gcy.defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
  auto device = common_npusim_device({&ghy, &gcy, &cx, &cy, &workspace}, "_thnn_fused_lstm_cell_backward_impl");
  at::Tensor grad_gates, grad_cx, grad_bias;
  run_on_device(device, [&] {
    auto w = cpu_view(workspace).chunk(4, 1);
    const at::Tensor &i = w[0], &f = w[1], &c = w[2], &o = w[3];
    at::Tensor tanh_cy = cpu_view(cy).tanh();
    // dL/dcy through hy = o * tanh(cy), plus the gradient arriving at cy directly
    at::Tensor dc = at::zeros_like(tanh_cy);
    at::Tensor d_o = at::zeros_like(tanh_cy);
    if (ghy.defined()) {
      at::Tensor g = cpu_view(ghy);
      d_o = g * tanh_cy;
      dc = g * o * (1 - tanh_cy * tanh_cy);
    }
    if (gcy.defined()) dc = dc + cpu_view(gcy);
    at::Tensor di = dc * c * (1 - i) * i;
    at::Tensor df = dc * cpu_view(cx) * (1 - f) * f;
    at::Tensor dg = dc * i * (1 - c * c);
    d_o = d_o * (1 - o) * o;
    grad_gates = at::cat({di, df, dg, d_o}, 1);
    grad_cx = dc * f;
    if (has_bias) grad_bias = grad_gates.sum(0);
  });
  return {adopt(grad_gates, device), adopt(grad_cx, device), adopt(grad_bias, device)};
}

// ------------------------------------------------------------------------------- GRU
// Workspace columns (each hidden_size wide): reset, update, new gate, hx, and the hidden
// part of the new gate (hidden_gates_n + hidden_bias_n), which the backward needs.

std::tuple<at::Tensor, at::Tensor> gru_cell(const at::Tensor& input_gates, const at::Tensor& hidden_gates,
                                            const at::Tensor& hx, const std::optional<at::Tensor>& input_bias,
                                            const std::optional<at::Tensor>& hidden_bias) {
  at::Tensor ib = or_undefined(input_bias), hb = or_undefined(hidden_bias);
  auto device = common_npusim_device({&input_gates, &hidden_gates, &hx, &ib, &hb}, "_thnn_fused_gru_cell");
  check_gates(input_gates, hidden_gates, hx, 3, "_thnn_fused_gru_cell");
  check_bias(ib, input_gates, "_thnn_fused_gru_cell");
  check_bias(hb, input_gates, "_thnn_fused_gru_cell");
  at::Tensor hy, workspace;
  run_on_device(device, [&] {
    at::Tensor igates = cpu_view(input_gates), hgates = cpu_view(hidden_gates);
    if (ib.defined()) igates = igates + cpu_view(ib);
    if (hb.defined()) hgates = hgates + cpu_view(hb);
    auto ic = igates.chunk(3, 1), hc = hgates.chunk(3, 1);
    at::Tensor r = (ic[0] + hc[0]).sigmoid();
    at::Tensor z = (ic[1] + hc[1]).sigmoid();
    at::Tensor n = (ic[2] + r * hc[2]).tanh();
    at::Tensor h = cpu_view(hx);
    hy = n + z * (h - n);
    workspace = at::cat({r, z, n, h, hc[2]}, 1);
  });
  return {adopt(hy, device), adopt(workspace, device)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> gru_cell_backward(const at::Tensor& grad_hy,
                                                                                         const at::Tensor& workspace,
                                                                                         bool has_bias) {
  auto device = common_npusim_device({&grad_hy, &workspace}, "_thnn_fused_gru_cell_backward");
  TORCH_CHECK(workspace.dim() == 2 && grad_hy.dim() == 2 && workspace.size(1) == 5 * grad_hy.size(1) &&
                  workspace.size(0) == grad_hy.size(0),
              "_thnn_fused_gru_cell_backward: workspace of shape ", workspace.sizes(), " does not match grad_hy of shape ",
              grad_hy.sizes());
  at::Tensor grad_input_gates, grad_hidden_gates, grad_hx, grad_input_bias, grad_hidden_bias;
  run_on_device(device, [&] {
    auto w = cpu_view(workspace).chunk(5, 1);
    const at::Tensor &r = w[0], &z = w[1], &n = w[2], &h = w[3], &hn = w[4];
    at::Tensor g = cpu_view(grad_hy);
    at::Tensor dz = g * (h - n) * (1 - z) * z;
    at::Tensor dn = g * (1 - z) * (1 - n * n);  // pre-activation of the new gate
    at::Tensor dhn = dn * r;
    at::Tensor dr = dn * hn * (1 - r) * r;
    grad_hx = g * z;
    grad_input_gates = at::cat({dr, dz, dn}, 1);
    grad_hidden_gates = at::cat({dr, dz, dhn}, 1);
    if (has_bias) {
      grad_input_bias = grad_input_gates.sum(0);
      grad_hidden_bias = grad_hidden_gates.sum(0);
    }
  });
  return {adopt(grad_input_gates, device), adopt(grad_hidden_gates, device), adopt(grad_hx, device),
          adopt(grad_input_bias, device), adopt(grad_hidden_bias, device)};
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("_thnn_fused_lstm_cell", TORCH_FN(lstm_cell));
  m.impl("_thnn_fused_lstm_cell_backward_impl", TORCH_FN(lstm_cell_backward_impl));
  m.impl("_thnn_fused_gru_cell", TORCH_FN(gru_cell));
  m.impl("_thnn_fused_gru_cell_backward", TORCH_FN(gru_cell_backward));
}

}  // namespace torch_npu_sim
