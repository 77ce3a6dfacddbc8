"""The stream sanitizer (torch_npu_sim.sanitizer): planted races are reported with both
accesses; ordered programs (events, wait_stream, synchronize, DDP, FSDP2, compiled
training) are not."""
import os
import subprocess
import sys

import pytest
import torch

import torch_npu_sim.sanitizer as sanitizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "distributed"))
from launcher import assert_clean, describe, launch  # noqa: E402


@pytest.fixture
def sanitized():
    sanitizer.enable()
    try:
        yield
    finally:
        sanitizer.disable()


def _written_on_side_stream():
    """A tensor made on the default stream, then written on a side stream that waited for it."""
    a = torch.ones(1000, device="npusim")
    side = torch.npusim.Stream()
    side.wait_stream(torch.npusim.current_stream())
    with torch.npusim.stream(side):
        a.mul_(2)
    return a, side


def test_read_after_unordered_write_is_reported(sanitized):
    a, side = _written_on_side_stream()
    with pytest.raises(sanitizer.StreamSanitizerError) as info:
        a + 1
    race = info.value.errors[0]
    text = str(info.value)
    assert "shape (1000,)" in text and "torch.float32" in text
    assert race.current.stream != race.previous.stream
    assert race.current.stream == (0, torch.npusim.default_stream().stream_id)
    assert race.previous.stream == (side.device_index, side.stream_id)
    assert "aten::add" in text and "aten::mul_" in text
    # both stack traces point at this file's lines
    assert any(f.filename == __file__ for f in race.current.stack)
    assert any(f.filename == __file__ and f.name == "_written_on_side_stream" for f in race.previous.stack)


def test_write_after_unordered_read_is_reported(sanitized):
    a = torch.ones(10, device="npusim")
    side = torch.npusim.Stream()
    side.wait_stream(torch.npusim.current_stream())
    with torch.npusim.stream(side):
        b = a * 3  # reads a on the side stream
    with pytest.raises(sanitizer.StreamSanitizerError) as info:
        a.zero_()  # default stream writes a while the side stream may still read it
    assert info.value.errors[0].current.write is True
    assert info.value.errors[0].previous.write is False
    del b


@pytest.mark.parametrize("order", ["wait_stream", "event", "record_event", "stream_synchronize",
                                   "device_synchronize", "event_synchronize"])
def test_ordered_accesses_are_not_reported(sanitized, order):
    a, side = _written_on_side_stream()
    current = torch.npusim.current_stream()
    if order == "wait_stream":
        current.wait_stream(side)
    elif order == "event":
        e = torch.npusim.Event()
        e.record(side)
        e.wait(current)
    elif order == "record_event":
        current.wait_event(side.record_event())
    elif order == "stream_synchronize":
        side.synchronize()
    elif order == "device_synchronize":
        torch.npusim.synchronize()
    else:
        e = side.record_event()
        e.synchronize()
    assert torch.equal((a + 1).cpu(), torch.full((1000,), 3.0))


def test_accelerator_streams_are_watched(sanitized):
    a, side = _written_on_side_stream()
    torch.accelerator.current_stream().wait_stream(side)
    assert torch.equal((a + 1).cpu(), torch.full((1000,), 3.0))


def test_event_recorded_before_the_write_does_not_order_it(sanitized):
    a = torch.ones(4, device="npusim")
    side = torch.npusim.Stream()
    side.wait_stream(torch.npusim.current_stream())
    early = side.record_event()
    with torch.npusim.stream(side):
        a.add_(1)
    torch.npusim.current_stream().wait_event(early)
    with pytest.raises(sanitizer.StreamSanitizerError):
        a.sum()


def test_item_waits_for_its_stream(sanitized):
    a, side = _written_on_side_stream()
    with torch.npusim.stream(side):
        assert a.sum().item() == 2000.0  # blocking: the host now waited for the side stream
    assert torch.equal((a + 1).cpu(), torch.full((1000,), 3.0))


def test_disable_restores_the_stream_api():
    sanitizer.enable()
    assert sanitizer.is_enabled()
    sanitizer.disable()
    assert not sanitizer.is_enabled()
    assert "wait_stream" not in torch.npusim.Stream.__dict__
    assert type(torch.npusim.Event()) is torch.Event
    assert type(torch.accelerator.current_stream()) is torch.Stream
    a, side = _written_on_side_stream()
    (a + 1).cpu()  # not watched any more


def test_environment_variable_turns_it_on():
    code = ("import torch, torch_npu_sim.sanitizer as s\n"
            "a = torch.ones(8, device='npusim'); side = torch.npusim.Stream()\n"
            "side.wait_stream(torch.npusim.current_stream())\n"
            "with torch.npusim.stream(side):\n    a.mul_(2)\n"
            "try:\n    a + 1\nexcept s.StreamSanitizerError:\n    print('reported', s.is_enabled())\n")
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, NPUSIM_SANITIZER="1"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "reported True" in r.stdout
    bad = subprocess.run([sys.executable, "-c", "import torch; torch.ones(1, device='npusim')"],
                         env=dict(os.environ, NPUSIM_SANITIZER="yes"), capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "NPUSIM_SANITIZER must be 0 or 1" in bad.stderr


def test_compiled_training_step_is_not_reported(sanitized):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).npusim()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = torch.compile(lambda x, y: torch.nn.functional.mse_loss(model(x), y), backend="npusim")
    x, y = torch.randn(8, 16, device="npusim"), torch.randn(8, 4, device="npusim")
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = step(x, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


_DDP_AND_FSDP = '''
import torch_npu_sim.sanitizer as sanitizer
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.distributed.fsdp import fully_shard
from torch.distributed.device_mesh import init_device_mesh
dist.init_process_group("npusim", rank=RANK, world_size=WORLD)
torch.npusim.set_device(RANK)
sanitizer.enable()
torch.manual_seed(0)
def make():
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).npusim()
x = torch.randn(8, 16, device="npusim") + RANK
ddp = DDP(make())
opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
for _ in range(2):
    opt.zero_grad(); ddp(x).sum().backward(); opt.step()
report(ddp=ddp.module[0].weight.sum().item())
mesh = init_device_mesh("npusim", (WORLD,))
model = make()
for layer in model:
    if isinstance(layer, torch.nn.Linear):
        fully_shard(layer, mesh=mesh)
fully_shard(model, mesh=mesh)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(2):
    opt.zero_grad(); model(x).sum().backward(); opt.step()
report(fsdp=model[0].weight.full_tensor().sum().item(), enabled=sanitizer.is_enabled())
dist.destroy_process_group()
'''


def test_ddp_and_fsdp2_steps_are_not_reported():
    outcomes = launch(_DDP_AND_FSDP, world=2, timeout=240)
    assert_clean(outcomes)
    for key in ("ddp", "fsdp"):
        assert outcomes[0].result(key) == outcomes[1].result(key), describe(outcomes)
    assert all(o.result("enabled") for o in outcomes)
