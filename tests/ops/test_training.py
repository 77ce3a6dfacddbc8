"""Autograd end to end: small models trained on npusim give the CPU's losses and gradients."""
import copy

import pytest
import torch


OPTIMIZERS = {
    "adam": lambda params: torch.optim.Adam(params, lr=1e-2),
    "sgd": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
}


def train(model, device, data, target, optimizer, steps=5):
    # npusim runs the CPU's kernels (attention included), so the gradients match bit for
    # bit; Adam, which turns gradients that are zero up to rounding (an attention key
    # bias) into full steps, would show any difference at once.
    model = model.to(device)
    opt = OPTIMIZERS[optimizer](model.parameters())
    x, y = data.to(device), target.to(device)
    losses, grads = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        grads.append([p.grad.detach().cpu().clone() for p in model.parameters()])
        opt.step()
        losses.append(loss.detach().cpu())
    return torch.stack(losses), grads, [p.detach().cpu() for p in model.parameters()]


def assert_same_training(model, data, target, optimizer):
    cpu = train(copy.deepcopy(model), "cpu", data, target, optimizer)
    npu = train(copy.deepcopy(model), "npusim", data, target, optimizer)
    torch.testing.assert_close(npu[0], cpu[0])
    for g_npu, g_cpu in zip(npu[1], cpu[1]):
        torch.testing.assert_close(g_npu, g_cpu)
    torch.testing.assert_close(npu[2], cpu[2])
    assert cpu[0][-1] < cpu[0][0]  # it did train


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_mlp_trains_like_cpu(optimizer):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.GELU(), torch.nn.LayerNorm(64), torch.nn.Linear(64, 3))
    assert_same_training(model, torch.randn(32, 20), torch.randn(32, 3), optimizer)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_transformer_trains_like_cpu(optimizer):
    torch.manual_seed(0)
    model = torch.nn.TransformerEncoderLayer(d_model=32, nhead=2, dim_feedforward=64, dropout=0.0, batch_first=True)
    assert_same_training(model, torch.randn(4, 10, 32), torch.randn(4, 10, 32), optimizer)


def test_mse_loss_emits_no_resize_warning(recwarn):
    a, b = torch.randn(5, device="npusim"), torch.randn(5, device="npusim")
    loss = torch.nn.functional.mse_loss(a, b)
    torch.testing.assert_close(loss.cpu(), torch.nn.functional.mse_loss(a.cpu(), b.cpu()))
    assert not [w for w in recwarn if "resized" in str(w.message)], [str(w.message) for w in recwarn]


def test_process_exits_cleanly_right_after_backward(fresh_python):
    # autograd's npusim device threads must not be caught mid-cleanup by interpreter exit
    for _ in range(3):
        r = fresh_python("""
            import torch
            x = torch.randn(3, device="npusim", requires_grad=True)
            (x * 2).sum().backward()
        """)
        assert r.returncode == 0, r.stderr
