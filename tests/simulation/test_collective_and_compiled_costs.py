"""Simulated time of collectives (alpha-beta of the algorithm run, over the chip's links) and of
Inductor-compiled kernels (bytes of their buffers)."""
import os
import sys

import pytest
import torch

from torch_npu_sim import simulation as sim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "distributed"))
from launcher import assert_clean, describe, launch  # noqa: E402

RANK_CODE = """
from torch_npu_sim import simulation as sim
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
device = torch.device("npusim", RANK)
torch.npusim.set_device(device)
small = torch.ones(1024, device=device)          # 4 KiB: the one-round direct all_reduce
large = torch.ones(1 << 20, device=device)       # 4 MiB: reduce-scatter, then all-gather
torch.npusim.synchronize()
sim.reset()
deltas = {}
for name, t in (("small", small), ("large", large)):
    before = sim.sim_time_ns()
    dist.all_reduce(t)
    deltas[name] = sim.sim_time_ns() - before
# on a side stream the collective overlaps: the current stream's clock stays
side = torch.npusim.Stream()
main_before = sim.sim_time_ns()
with torch.npusim.stream(side):
    dist.all_reduce(large)
report(deltas=deltas, main_unchanged=sim.sim_time_ns() == main_before,
       side=sim.sim_time_ns(side), value=large[0].item(),
       stats={s.name: [s.kind, s.count] for s in sim.breakdown()})
dist.destroy_process_group()
"""


def test_all_reduce_is_charged_by_the_algorithm_run():
    outcomes = launch(RANK_CODE, 2, env={"NPUSIM_CHIP": "a100-sxm4-80gb"}, timeout=180)
    assert_clean(outcomes)
    link_bandwidth, latency_ns = 300e9, 5000  # the a100-sxm4-80gb preset, NVSwitch
    small_bytes, large_bytes = 4096, 4 << 20
    # direct: each rank sends its whole buffer to its one peer, one round
    small = round(latency_ns + small_bytes / link_bandwidth * 1e9)
    # large: two rounds, each sending half the buffer
    large = round(2 * (latency_ns + large_bytes / 2 / link_bandwidth * 1e9))
    for o in outcomes:
        assert o.result("deltas") == {"small": small, "large": large}, describe(outcomes)
        assert o.result("main_unchanged") is True
        assert o.result("side") >= large
        assert o.result("value") == 4.0  # two all_reduces of ones on 2 ranks, really computed
        assert o.result("stats")["all_reduce"] == ["collective", 3]


def test_compiled_kernels_are_charged():
    previous = sim.get_chip()
    sim.set_chip("h100-sxm5-80gb")
    sim.enable()
    try:
        x = torch.randn(1 << 16, device="npusim")
        fn = torch.compile(lambda t: (t * 2 + 1).relu(), backend="npusim")
        expected = fn(x)  # compiles
        torch.npusim.synchronize()
        sim.reset()
        out = fn(x)
        torch.testing.assert_close(out, (x * 2 + 1).relu())
        kernels = [s for s in sim.breakdown() if s.name.startswith("inductor::")]
        assert kernels, [s.name for s in sim.breakdown()]
        nbytes = sum(k.bytes for k in kernels)
        assert nbytes == 2 * 4 * (1 << 16)  # the fused kernel reads x and writes its result
        chip = sim.get_chip()
        expected_ns = round(nbytes / chip.memory_bandwidth * 1e9 + chip.launch_latency_s * 1e9)
        assert sum(k.sim_ns for k in kernels) == expected_ns
        assert expected.shape == out.shape
    finally:
        sim.disable()
        sim.set_chip(previous)
        sim.reset()
