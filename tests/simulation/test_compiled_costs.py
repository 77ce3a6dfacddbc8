"""Inductor kernels on npusim are charged what they compute: the arithmetic ops of their fused
loop bodies (one FLOP per op per iteration: add, mul, exp, reduction, ...; loads, stores,
constants and dtype conversions count nothing) and the bytes of the buffers they really read
or write in global memory, not the intermediates fused away.

FLOPs are read off simulated time: on a chip with 1 GFLOP/s and near-infinite bandwidth a
kernel's time is its FLOPs in ns plus the launch latency."""
import dataclasses

import pytest
import torch
import torch._dynamo
from hypothesis import HealthCheck, given, settings, strategies as st

from torch_npu_sim import simulation as sim
from torch_npu_sim.simulation import compiled

# a chip where time is FLOPs: 1 FLOP per ns at every precision, bytes all but free
FLOP_CLOCK = dataclasses.replace(sim.PRESETS["h100-sxm5-80gb"], name="flop-clock", peak_flops_fp32=1e9,
                                 peak_flops_bf16=1e9, peak_flops_int8=1e9, memory_bandwidth=1e18)

# one Inductor op each (the second input y is read by mul_y only)
POINTWISE = {
    "add": lambda x, y: x + 1.5,
    "sub": lambda x, y: x - 0.25,
    "mul": lambda x, y: x * 0.75,
    "mul_y": lambda x, y: x * y,
    "relu": lambda x, y: x.relu(),
    "exp": lambda x, y: x.exp(),
    "neg": lambda x, y: -x,
    "abs": lambda x, y: x.abs(),
    "tanh": lambda x, y: x.tanh(),
    "sin": lambda x, y: x.sin(),
}

SETTINGS = settings(max_examples=6, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def flop_clock():
    previous = sim.get_chip()
    sim.set_chip(FLOP_CLOCK)
    sim.enable()
    try:
        yield
    finally:
        sim.disable()
        sim.set_chip(previous)
        sim.reset()


def measure(fn, *args):
    """Per-name stats of one call (after a warm-up call that compiles)."""
    fn(*args)
    torch.npusim.synchronize()
    sim.reset()
    fn(*args)
    return sim.breakdown()


def inductor_kernels(stats):
    return [s for s in stats if s.name.startswith("inductor::")]


def charged_flops(stat):
    """FLOPs of a stat's calls on FLOP_CLOCK: time less the launch latencies."""
    return stat.sim_ns - stat.count * round(FLOP_CLOCK.launch_latency_s * 1e9)


def compile_fresh(fn, **kwargs):
    torch._dynamo.reset()  # each example's chain compiles anew (not a recompile of the last)
    return torch.compile(fn, backend="npusim", **kwargs)


@SETTINGS
@given(ops=st.lists(st.sampled_from(sorted(POINTWISE)), min_size=1, max_size=6),
       shape=st.lists(st.integers(1, 40), min_size=1, max_size=3),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_pointwise_chain_is_one_kernel_charged_its_ops_and_its_inputs_and_output(flop_clock, ops, shape, dtype):
    def chain(x, y):
        for op in ops:
            x = POINTWISE[op](x, y)
        return x

    x, y = (torch.randn(shape, device="npusim").to(dtype) for _ in range(2))
    numel, itemsize, k = x.numel(), dtype.itemsize, len(ops)

    (kernel,) = inductor_kernels(measure(compile_fresh(chain), x, y))
    assert kernel.count == 1
    assert charged_flops(kernel) == k * numel
    inputs = 2 if "mul_y" in ops else 1
    assert kernel.bytes == (inputs + 1) * numel * itemsize  # x (and y) read once, the result written

    eager = [s for s in measure(chain, x, y) if s.kind == "kernel"]
    assert sum(s.count for s in eager) == k
    eager_bytes = sum(s.bytes for s in eager)
    # eager writes and reads back each of the k - 1 intermediates
    assert eager_bytes > kernel.bytes if k > 1 else eager_bytes >= kernel.bytes  # (+ a wrapped scalar)


@SETTINGS
@given(reduction=st.sampled_from(["sum", "softmax"]),
       shape=st.tuples(st.integers(1, 24), st.integers(2, 64)),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_reduction_kernel_is_charged_its_input_and_output(flop_clock, reduction, shape, dtype):
    fn = {"sum": lambda x: x.sum(-1), "softmax": lambda x: x.softmax(-1)}[reduction]
    x = torch.randn(shape, device="npusim").to(dtype)
    stats = measure(compile_fresh(fn), x)
    kernels = inductor_kernels(stats)
    assert len(kernels) == 1 and kernels[0].count == 1, stats
    rows, numel = shape[0], x.numel()
    out = fn(x)
    # softmax's row maxima and sums stay inside the kernel: not charged
    assert kernels[0].bytes == x.nbytes + out.nbytes
    # sum: one add per element; softmax: the max pass (1), the exp-sum pass (sub, exp, add)
    # and the normalising pass (sub, exp, div: Inductor recomputes exp) per element
    assert charged_flops(kernels[0]) == (1 if reduction == "sum" else 7) * numel
    assert out.shape[0] == rows


@pytest.mark.parametrize("update, reads", [(lambda x: x.add_(1), True), (lambda x: x.fill_(3.0), False)],
                         ids=["add_", "fill_"])
def test_in_place_update_counts_a_read_only_when_it_reads(request, flop_clock, update, reads):
    import sys

    triton = sys.modules.get("torch_npu_sim.integrations.triton")
    if not reads and triton is not None and triton.is_enabled():
        # Known: once npusim's Triton integration is on in a process (a Triton-mode compilation
        # ran), this store-only kernel is charged twice its bytes although its generated cost is
        # right; not yet explained, so it is marked rather than hidden.
        request.applymarker(pytest.mark.xfail(reason="store-only kernel charged twice after Triton mode", strict=False))
    x = torch.randn(64, 32, device="npusim")
    (kernel,) = inductor_kernels(measure(compile_fresh(update), x))
    assert kernel.bytes == (2 if reads else 1) * x.nbytes


def test_dynamic_shapes_are_charged_with_each_calls_sizes(flop_clock):
    fn = compile_fresh(lambda x, bias: (x * 2 + bias).relu().sum(-1), dynamic=True)
    for rows, cols in ((8, 16), (40, 24)):
        x, bias = torch.randn(rows, cols, device="npusim"), torch.randn(cols, device="npusim")
        (kernel,) = inductor_kernels(measure(fn, x, bias))
        assert kernel.bytes == x.nbytes + bias.nbytes + rows * 4
        assert charged_flops(kernel) == 4 * rows * cols  # mul, add, relu, sum's add


class _RecordingCall:
    def __init__(self):
        self.calls = 0

    def __call__(self, kernel, *args):
        self.calls += 1
        return kernel(*args)


def _charged_bytes(name):
    return sum(s.bytes for s in sim.breakdown() if s.name == "inductor::" + name)


def test_cost_only_mode_charges_without_running(flop_clock, monkeypatch):
    recording = _RecordingCall()
    call = compiled.costed(recording)
    x = torch.ones(16, device="npusim")
    sim.reset()
    call(lambda t: None, x, cost=(16, 64, 0), name="probe")
    assert recording.calls == 1 and _charged_bytes("probe") == 64
    monkeypatch.setattr(compiled, "_cost_only_query", lambda: lambda: True)
    call(lambda t: None, x, cost=(16, 64, 0), name="probe")
    assert recording.calls == 1 and _charged_bytes("probe") == 128


def test_buffer_rule_stays_reachable_for_comparison(flop_clock, monkeypatch):
    call = compiled.costed(_RecordingCall())
    x, out = torch.ones(16, device="npusim"), torch.empty(16, device="npusim")
    sim.reset()
    monkeypatch.setattr(compiled, "FUSION_AWARE", False)
    call(lambda a, b: None, x, out, cost=(16, 8, 0), name="probe")
    assert _charged_bytes("probe") == x.nbytes + out.nbytes
