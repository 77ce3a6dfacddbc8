"""The cost model on npusim: roofline kernel costs, FLOPs as torch.utils.flop_counter counts them,
copies over the host link, dependencies in simulated time, and the per-op breakdown."""
import json
import time

import pytest
import torch
import torch.nn.functional as F
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from torch_npu_sim import simulation as sim
from torch_npu_sim.simulation import chips, trace

H100 = chips.PRESETS["h100-sxm5-80gb"]


@pytest.fixture
def h100():
    """The H100 preset with the cost model on, clocks at zero; the defaults again afterwards."""
    previous = sim.get_chip()
    sim.set_chip("h100-sxm5-80gb")
    sim.enable()
    torch.npusim.synchronize()
    sim.reset()
    yield H100
    sim.disable()
    sim.set_simulated_timing(False)
    sim.set_chip(previous)
    sim.reset()


def ns(seconds):
    return round(seconds * 1e9)


def charged(fn):
    """Simulated ns that fn's launches add to the current stream."""
    before = sim.sim_time_ns()
    fn()
    return sim.sim_time_ns() - before


def test_large_matmul_is_flops_over_peak(h100):
    a = torch.randn(2048, 1024, device="npusim")
    b = torch.randn(1024, 512, device="npusim")
    flops, nbytes = 2 * 2048 * 1024 * 512, 4 * (2048 * 1024 + 1024 * 512 + 2048 * 512)
    assert flops / H100.peak_flops_fp32 > nbytes / H100.memory_bandwidth  # compute bound
    assert charged(lambda: a @ b) == ns(flops / H100.peak_flops_fp32 + H100.launch_latency_s)
    # bf16 runs at the bf16 peak
    a16, b16 = a.bfloat16(), b.bfloat16()
    nbytes16 = nbytes // 2
    expected = max(flops / H100.peak_flops_bf16, nbytes16 / H100.memory_bandwidth) + H100.launch_latency_s
    assert charged(lambda: a16 @ b16) == ns(expected)


def test_pointwise_is_memory_bound_by_element_count(h100):
    x = torch.randn(1 << 20, device="npusim")
    y = torch.randn(1 << 20, device="npusim")
    nbytes = 3 * 4 * (1 << 20)
    assert charged(lambda: x + y) == ns(nbytes / H100.memory_bandwidth + H100.launch_latency_s)
    stats = {s.name: s for s in sim.breakdown()}
    assert stats["aten::add"].flops == 1 << 20 and stats["aten::add"].bytes == nbytes
    # a fallback op (no native kernel): bytes of its input and output, one op per element
    charged(lambda: torch.tanh(x))
    tanh = {s.name: s for s in sim.breakdown()}["aten::tanh"]
    assert tanh.bytes == 2 * 4 * (1 << 20) and tanh.flops == 1 << 20 and tanh.count == 1


def test_host_copies_use_the_host_link(h100):
    host = torch.randn(1 << 22)
    nbytes = host.numel() * 4
    device = torch.empty(1 << 22, device="npusim")
    assert charged(lambda: device.copy_(host)) == ns(nbytes / H100.h2d_bandwidth + H100.host_link_latency_s)
    assert charged(lambda: device.cpu()) >= ns(nbytes / H100.d2h_bandwidth + H100.host_link_latency_s)


def _npusim_flops(fn, names):
    sim.reset()
    fn()
    return sum(s.flops for s in sim.breakdown() if s.name in names)


MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm",
              "aten::_scaled_dot_product_flash_attention_for_cpu",
              "aten::_scaled_dot_product_flash_attention_for_cpu_backward", "aten::convolution",
              "aten::convolution_backward"}


@pytest.mark.parametrize("case", ["mm", "addmm", "bmm", "baddbmm", "linear_backward", "sdpa", "sdpa_backward",
                                  "conv2d", "conv2d_backward", "conv_transpose1d_backward"])
def test_flops_agree_with_flop_counter(h100, case):
    torch.manual_seed(0)
    shapes = {
        "mm": [(64, 96), (96, 80)], "addmm": [(80,), (64, 96), (96, 80)], "bmm": [(3, 64, 32), (3, 32, 48)],
        "baddbmm": [(3, 64, 48), (3, 64, 32), (3, 32, 48)], "linear_backward": [(16, 64), (32, 64), (32,)],
        "sdpa": [(2, 4, 64, 32)] * 3, "sdpa_backward": [(2, 4, 64, 32)] * 3,
        "conv2d": [(2, 3, 16, 16), (8, 3, 3, 3), (8,)], "conv2d_backward": [(2, 3, 16, 16), (8, 3, 3, 3), (8,)],
        "conv_transpose1d_backward": [(2, 4, 20), (4, 6, 5), (6,)],
    }[case]
    cpu = [torch.randn(s, requires_grad=case.endswith("backward")) for s in shapes]

    def run(t):
        if case == "mm":
            return torch.mm(*t)
        if case == "addmm":
            return torch.addmm(*t)
        if case == "bmm":
            return torch.bmm(*t)
        if case == "baddbmm":
            return torch.baddbmm(*t)
        if case == "linear_backward":
            return F.linear(*t).sum().backward()
        if case.startswith("conv2d"):
            out = F.conv2d(*t, stride=2, padding=1)
            return out.sum().backward() if case.endswith("backward") else out
        if case == "conv_transpose1d_backward":
            return F.conv_transpose1d(*t, stride=2).sum().backward()
        out = F.scaled_dot_product_attention(*t)
        if case == "sdpa_backward":
            out.sum().backward()

    if case.startswith("sdpa"):
        # the CPU's fused attention kernel is not in flop_counter's registry: its formulas directly
        q, k, v = (t.shape for t in cpu)
        expected = flop_counter.sdpa_flop_count(q, k, v)
        if case == "sdpa_backward":
            expected += flop_counter.sdpa_backward_flop_count(q, q, k, v)
    else:
        with FlopCounterMode(display=False) as counter:
            run(cpu)
        expected = counter.get_total_flops()
    assert expected > 0
    npu = [t.detach().to("npusim").requires_grad_(t.requires_grad) for t in cpu]
    assert _npusim_flops(lambda: run(npu), MATMUL_OPS) == expected


def test_cost_free_when_off():
    sim.disable()
    assert not sim.enabled()
    sim.reset()
    a = torch.randn(512, 512, device="npusim")
    delta = charged(lambda: a @ a)
    assert delta == ns(sim.get_chip().launch_latency_s)  # the launch latency only
    assert sim.breakdown() == []


def test_stream_dependencies_and_elapsed_time(h100):
    a = torch.randn(1024, 1024, device="npusim")
    mm_ns = ns(2 * 1024 ** 3 / H100.peak_flops_fp32 + H100.launch_latency_s)
    torch.npusim.synchronize()
    sim.reset()
    side = torch.npusim.Stream()
    start, end = torch.npusim.Event(enable_timing=True), torch.npusim.Event(enable_timing=True)
    wall_start = time.perf_counter()
    start.record()
    a @ a
    a @ a
    with torch.npusim.stream(side):
        a @ a  # overlaps with the main stream's work
    assert sim.sim_time_ns(side) == mm_ns
    assert sim.sim_time_ns() == 2 * mm_ns
    side.wait_stream(torch.npusim.current_stream())
    with torch.npusim.stream(side):
        a @ a  # after the main stream's two products
    assert sim.sim_time_ns(side) == 3 * mm_ns
    end.record(side)
    wall_ms = (time.perf_counter() - wall_start) * 1000
    sim.set_simulated_timing(True)
    assert sim.simulated_timing()
    assert end.elapsed_time(start) == pytest.approx(-3 * mm_ns / 1e6, rel=1e-5)
    assert start.elapsed_time(end) == pytest.approx(3 * mm_ns / 1e6, rel=1e-5)
    sim.set_simulated_timing(False)
    # wall milliseconds again: a real measurement, within the time the test itself took
    assert 0 < start.elapsed_time(end) <= wall_ms + 1


def test_activity_trace(h100, tmp_path):
    a = torch.randn(256, 256, device="npusim")
    with trace.record_activities() as rec:
        b = a @ a
        b.cpu()
    kinds = [x.kind for x in rec.activities]
    names = [x.name for x in rec.activities]
    assert "aten::mm" in names and "memcpy" in kinds
    for x, y in zip(rec.activities, rec.activities[1:]):
        if x.stream_id == y.stream_id:
            assert y.sim_start_ns >= x.sim_end_ns
    path = trace.write_chrome_trace(str(tmp_path / "t.json"), rec.activities)
    events = json.load(open(path))["traceEvents"]
    assert any(e.get("name") == "aten::mm" and e["ph"] == "X" and e["dur"] > 0 for e in events)


def test_format_breakdown(h100):
    a = torch.randn(128, 128, device="npusim")
    (a @ a).relu()
    text = sim.format_breakdown()
    assert "aten::mm" in text and "total" in text
