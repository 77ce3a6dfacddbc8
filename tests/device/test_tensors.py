"""Tensors in and out: copies, pinned memory, serialization, autocast, GradScaler, errors."""
import io

import pytest
import torch


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
                                   torch.int32, torch.uint8, torch.bool, torch.complex64])
def test_round_trip(dtype):
    x = (torch.randn(5, 7) * 10).to(dtype)
    y = x.to("npusim")
    assert y.device.type == "npusim" and y.dtype == dtype
    assert torch.equal(y.cpu(), x)


def test_non_contiguous_and_casting_copies():
    x = torch.randn(6, 8)
    y = x.to("npusim").t()
    assert not y.is_contiguous()
    assert torch.equal(y.cpu(), x.t())
    z = torch.empty(8, 6, dtype=torch.float64, device="npusim")
    z.copy_(x.t())
    assert torch.equal(z.cpu(), x.t().double())
    b = torch.empty(3, 8, device="npusim")
    b.copy_(torch.arange(8.0))  # broadcast
    assert torch.equal(b.cpu(), torch.arange(8.0).expand(3, 8))


def test_copy_between_npusim_devices():
    x = torch.randn(100, device="npusim:0")
    y = x.to("npusim:3")
    assert y.device == torch.device("npusim", 3)
    assert torch.equal(x.cpu(), y.cpu())
    assert (y + 1).device.index == 3


def test_pinned_memory_and_non_blocking():
    x = torch.randn(1000)
    p = x.pin_memory()
    assert p.is_pinned() and not x.is_pinned()
    y = p.to("npusim", non_blocking=True)
    torch.npusim.synchronize()
    assert torch.equal(y.cpu(), x)
    back = torch.empty(1000).pin_memory()
    back.copy_(y, non_blocking=True)
    torch.npusim.current_stream().synchronize()
    assert torch.equal(back, x)


def test_save_and_load_tensors_and_modules():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).to("npusim:1")
    t = torch.arange(6.0, device="npusim:2")
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "t": t}, buf)
    buf.seek(0)
    loaded = torch.load(buf)
    assert loaded["t"].device == torch.device("npusim", 2) and torch.equal(loaded["t"].cpu(), t.cpu())
    assert loaded["model"]["0.weight"].device == torch.device("npusim", 1)
    buf.seek(0)
    on_cpu = torch.load(buf, map_location="cpu")
    assert on_cpu["t"].device.type == "cpu"
    buf.seek(0)
    moved = torch.load(buf, map_location="npusim:0")
    assert moved["t"].device == torch.device("npusim", 0)
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).to("npusim")
    fresh.load_state_dict(loaded["model"])
    inp = torch.randn(2, 4)
    assert torch.allclose(fresh(inp.to("npusim")).cpu(), model.cpu()(inp))


def test_autocast_and_grad_scaler():
    a, b = torch.randn(8, 8, device="npusim"), torch.randn(8, 8, device="npusim")
    with torch.autocast("npusim", dtype=torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
        assert torch.softmax(a, dim=0).dtype == torch.float32
    with torch.autocast("npusim", dtype=torch.float16):
        assert torch.nn.functional.linear(a, b).dtype == torch.float16
    assert (a @ b).dtype == torch.float32

    model = torch.nn.Linear(8, 1).to("npusim")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("npusim", init_scale=2.0**10)
    before = model.weight.detach().clone()
    with torch.autocast("npusim", dtype=torch.float16):
        loss = model(a).float().pow(2).mean()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    assert not torch.equal(before.cpu(), model.weight.detach().cpu())
    assert scaler.get_scale() == 2.0**10  # finite gradients: scale kept


def test_wrong_device_errors():
    x = torch.ones(3, device="npusim:0")
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        x + torch.ones(3)
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        x + torch.ones(3, device="npusim:1")
    assert torch.equal((x + torch.tensor(2.0)).cpu(), torch.full((3,), 3.0))  # 0-dim CPU scalars mix


def test_item_and_printing():
    x = torch.tensor([1.5, 2.5], device="npusim")
    assert x.sum().item() == 4.0
    assert "device='npusim:0'" in repr(x)
