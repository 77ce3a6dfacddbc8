"""RNNs on npusim (fused LSTM/GRU cell kernels) give the CPU's outputs, final states and
gradients: layers, directions, batch_first, packed sequences, the cells, no bias."""
import copy

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

DEV = "npusim"


def assert_same_training_step(module, make_inputs, run):
    torch.manual_seed(0)
    cpu = module
    npu = copy.deepcopy(module).to(DEV)
    inputs = make_inputs()
    cpu_inputs = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
    npu_inputs = [x.to(DEV).requires_grad_(x.is_floating_point()) for x in inputs]
    want, got = run(cpu, cpu_inputs), run(npu, npu_inputs)
    assert len(want) == len(got)
    for w, g in zip(want, got):
        assert g.device.type == DEV
        torch.testing.assert_close(g.cpu(), w)
    grads = [torch.randn_like(w) for w in want]
    torch.autograd.backward(want, grads)
    torch.autograd.backward(got, [g.to(DEV) for g in grads])
    for (name, p), (_, q) in zip(cpu.named_parameters(), npu.named_parameters()):
        torch.testing.assert_close(q.grad.cpu(), p.grad, msg=name)
    for a, b in zip(cpu_inputs, npu_inputs):
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            torch.testing.assert_close(b.grad.cpu(), a.grad)


@pytest.mark.parametrize("kind", [torch.nn.LSTM, torch.nn.GRU])
@pytest.mark.parametrize("layers,bidirectional,batch_first,bias", [
    (1, False, False, True), (2, False, True, True), (2, True, False, True), (3, True, True, False)])
def test_rnn_matches_cpu(kind, layers, bidirectional, batch_first, bias):
    module = kind(6, 8, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias)
    shape = (3, 5, 6) if batch_first else (5, 3, 6)

    def run(m, inputs):
        out, state = m(inputs[0])
        return [out] + (list(state) if isinstance(state, tuple) else [state])

    assert_same_training_step(module, lambda: [torch.randn(shape)], run)


@pytest.mark.parametrize("kind", [torch.nn.LSTM, torch.nn.GRU])
def test_packed_sequences_match_cpu(kind):
    module = kind(4, 5, num_layers=2, bidirectional=True, batch_first=True)
    lengths = torch.tensor([6, 4, 1])

    def run(m, inputs):
        packed = pack_padded_sequence(inputs[0], lengths, batch_first=True)
        out, state = m(packed)
        padded, out_lengths = pad_packed_sequence(out, batch_first=True)
        assert torch.equal(out_lengths, lengths)
        return [padded] + (list(state) if isinstance(state, tuple) else [state])

    assert_same_training_step(module, lambda: [torch.randn(3, 6, 4)], run)


def test_initial_states_and_cells_match_cpu():
    lstm = torch.nn.LSTM(3, 4, num_layers=2)
    assert_same_training_step(lstm, lambda: [torch.randn(5, 2, 3), torch.randn(2, 2, 4), torch.randn(2, 2, 4)],
                              lambda m, x: (lambda out: [out[0], *out[1]])(m(x[0], (x[1], x[2]))))
    for cell in (torch.nn.LSTMCell(3, 4), torch.nn.GRUCell(3, 4), torch.nn.GRUCell(3, 4, bias=False)):
        def run(m, x):
            out = m(x[0], (x[1], x[2]) if isinstance(m, torch.nn.LSTMCell) else x[1])
            return list(out) if isinstance(out, tuple) else [out]

        assert_same_training_step(cell, lambda: [torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)], run)


def test_fused_cell_shape_errors_are_clear():
    gates = torch.randn(2, 16, device=DEV)
    with pytest.raises(RuntimeError, match="_thnn_fused_lstm_cell: the state of shape"):
        torch.ops.aten._thnn_fused_lstm_cell(gates, gates, torch.randn(2, 5, device=DEV))
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        torch.ops.aten._thnn_fused_gru_cell(torch.randn(2, 12, device=DEV), torch.randn(2, 12), torch.randn(2, 4, device=DEV))
