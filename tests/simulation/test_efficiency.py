"""Per-op-class efficiency: calibrated charges equal the published-table formula computed here in
Python, efficiencies stay in (0, 1] and rise with size, "roofline" reproduces the plain charges,
and the setting is per process with errors that name the bad value."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torch_npu_sim import simulation as sim
from torch_npu_sim.simulation import chips, efficiency

CALIBRATED = sorted(k for k in efficiency.TABLES if k in chips.PRESETS)  # h100-sxm5-96gb: once chips.py has it
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def chip_state():
    """Cost model on, clocks at zero; the default chip and the plain roofline again afterwards."""
    previous = sim.get_chip()
    sim.enable()
    torch.npusim.synchronize()
    sim.reset()
    yield
    sim.set_efficiency("roofline")
    sim.disable()
    sim.set_chip(previous)
    sim.reset()


def use(chip_name, mode):
    sim.set_chip(chip_name)
    sim.set_efficiency(mode)
    return chips.PRESETS[chip_name], (efficiency.ROOFLINE if mode == "roofline" else efficiency.TABLES[chip_name])


def plain_roofline_ns(flops, nbytes, compute_class, chip):
    """The charge before efficiencies existed (sim_clock.cpp's old formula)."""
    compute = flops / chip.peak_flops(compute_class) * 1e9 if flops > 0 else 0.0
    memory = nbytes / chip.memory_bandwidth * 1e9 if nbytes > 0 else 0.0
    return efficiency._round_ns(max(compute, memory) + chip.launch_latency_s * 1e9)


sizes = st.one_of(st.just(0.0), st.floats(1.0, 1e16, allow_nan=False, allow_infinity=False))


# ---- the runtime's charge equals the Python formula from the table ----

@SETTINGS
@given(chip_name=st.sampled_from(CALIBRATED), mode=st.sampled_from(efficiency.MODES), flops=sizes, nbytes=sizes,
       compute_class=st.integers(0, 2), op_class=st.integers(0, 2))
def test_kernel_time_is_the_table_formula(chip_state, chip_name, mode, flops, nbytes, compute_class, op_class):
    chip, table = use(chip_name, mode)
    got = sim.kernel_time_ns(flops, nbytes, compute_class, op_class)
    assert got == efficiency.predict_time_ns(flops, nbytes, compute_class, op_class, chip, table)
    if mode == "roofline":
        assert got == plain_roofline_ns(flops, nbytes, compute_class, chip)
    else:
        assert got >= plain_roofline_ns(flops, nbytes, compute_class, chip)  # never faster than the roofline


def op_stats():
    torch.npusim.synchronize()
    return {s.name: s for s in sim.breakdown() if s.kind == "kernel"}


def check_charges(chip, table, dtype, expected_classes):
    """Every kernel in the breakdown charged exactly the Python formula for its op class."""
    stats = op_stats()
    assert set(expected_classes) <= set(stats), (expected_classes, list(stats))
    for name, op_class in expected_classes.items():
        s = stats[name]
        cc = {torch.float32: 0, torch.bfloat16: 1}[dtype]
        one = efficiency.predict_time_ns(s.flops / s.count, s.bytes / s.count, cc, op_class, chip, table)
        assert s.sim_ns == one * s.count, (name, s)


@SETTINGS
@given(chip_name=st.sampled_from(CALIBRATED), mode=st.sampled_from(efficiency.MODES),
       m=st.integers(1, 48), k=st.integers(1, 48), n=st.integers(1, 48), batch=st.integers(1, 3),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_mm_bmm_pointwise_charges(chip_state, chip_name, mode, m, k, n, batch, dtype):
    chip, table = use(chip_name, mode)
    a = torch.randn(m, k, device="npusim", dtype=dtype)
    b = torch.randn(k, n, device="npusim", dtype=dtype)
    ab = torch.randn(batch, m, k, device="npusim", dtype=dtype)
    bb = torch.randn(batch, k, n, device="npusim", dtype=dtype)
    torch.npusim.synchronize()
    sim.reset()
    a @ b
    torch.bmm(ab, bb)
    a + a
    stats = op_stats()
    assert stats["aten::mm"].flops == 2 * m * k * n
    assert stats["aten::bmm"].flops == 2 * batch * m * k * n
    check_charges(chip, table, dtype, {"aten::mm": 1, "aten::bmm": 1, "aten::add": 0})


@SETTINGS
@given(chip_name=st.sampled_from(CALIBRATED), mode=st.sampled_from(efficiency.MODES),
       b=st.integers(1, 2), h=st.integers(1, 3), s=st.integers(1, 24), t=st.integers(1, 24),
       d=st.sampled_from([8, 16, 32]), backward=st.booleans())
def test_sdpa_charges(chip_state, chip_name, mode, b, h, s, t, d, backward):
    chip, table = use(chip_name, mode)
    q = torch.randn(b, h, s, d, device="npusim", requires_grad=backward)
    k = torch.randn(b, h, t, d, device="npusim", requires_grad=backward)
    v = torch.randn(b, h, t, d, device="npusim", requires_grad=backward)
    torch.npusim.synchronize()
    sim.reset()
    out = F.scaled_dot_product_attention(q, k, v)
    if backward:
        out.sum().backward()
    stats = op_stats()
    attention = {name: 2 for name in stats if name.startswith("aten::_scaled_dot_product_") and "attention" in name}
    assert attention, list(stats)
    fwd = [n for n in attention if not n.endswith("backward")]
    assert stats[fwd[0]].flops == 4 * b * h * s * t * d
    if backward:
        assert any(n.endswith("backward") for n in attention)
    check_charges(chip, table, torch.float32, attention)


def test_convolution_is_a_matmul(chip_state):
    chip, table = use("h100-sxm5-80gb", "calibrated")
    x = torch.randn(2, 4, 16, 16, device="npusim")
    w = torch.randn(8, 4, 3, 3, device="npusim")
    torch.npusim.synchronize()
    sim.reset()
    F.conv2d(x, w)
    check_charges(chip, table, torch.float32, {"aten::convolution": 1})


# ---- the curves ----

@given(chip_name=st.sampled_from(CALIBRATED), op_class=st.integers(0, 2),
       s1=st.floats(1.0, 1e17), s2=st.floats(1.0, 1e17))
def test_efficiency_in_unit_interval_and_monotone(chip_name, op_class, s1, s2):
    table = efficiency.TABLES[chip_name]
    lo, hi = sorted((s1, s2))
    for curve in (table.compute[op_class], table.memory[op_class]):
        assert 0 < curve.at(lo) <= curve.at(hi) <= curve.max <= 1
    chip = chips.PRESETS[chip_name]
    # the charged time never falls as a matmul grows
    t_lo = efficiency.predict_time_ns(lo, 0, 1, op_class, chip, table)
    t_hi = efficiency.predict_time_ns(hi, 0, 1, op_class, chip, table)
    assert t_lo <= t_hi


def test_matmul_efficiency_rises_with_size():
    for name in CALIBRATED:
        mm = efficiency.TABLES[name].compute[1]
        effs = [mm.at(2.0 * n ** 3) for n in (128, 512, 2048, 8192)]
        assert effs == sorted(effs) and effs[0] < 0.5 * effs[-1] and effs[-1] < 1


def test_large_matmul_charges_the_published_mamf(chip_state):
    for name, (m, n, k, tflops) in efficiency.PUBLISHED_MAMF.items():
        chip, table = use(name, "calibrated")
        flops, nbytes = 2.0 * m * n * k, 2.0 * (m * k + k * n + m * n)
        predicted = flops / sim.kernel_time_ns(flops, nbytes, 1, 1) / 1e3
        assert predicted == pytest.approx(tflops, rel=2e-3)


# ---- switching ----

def test_modes_and_errors(chip_state):
    sim.set_chip("h100-sxm5-80gb")
    assert sim.efficiency_mode() == "roofline" and sim.get_efficiency() == efficiency.ROOFLINE
    sim.set_efficiency("calibrated")
    assert sim.get_efficiency() == efficiency.TABLES["h100-sxm5-80gb"]
    sim.set_chip("a100-sxm4-80gb")  # follows the chip
    assert sim.get_efficiency() == efficiency.TABLES["a100-sxm4-80gb"]
    with pytest.warns(UserWarning, match="no calibrated efficiency for chip 'edge-npu'"):
        sim.set_chip("edge-npu")
    assert sim.efficiency_mode() == "roofline" and sim.get_efficiency() == efficiency.ROOFLINE
    with pytest.raises(ValueError, match="no calibrated efficiency for chip 'NPUSim-1'"):
        sim.set_efficiency("calibrated", "NPUSim-1")
    with pytest.raises(ValueError, match="'turbo'"):
        sim.set_efficiency("turbo")
    with pytest.raises(ValueError, match="max must be a finite number in \\(0, 1\\], got 1.5"):
        efficiency.Curve(1.5)
    with pytest.raises(ValueError, match="exponent must be"):
        efficiency.Curve(0.5, 1e9, 2.0)
    with pytest.raises(RuntimeError, match=r"compute\[matmul\].max must be in \(0, 1\], got 1.5"):
        torch.ops.npusim_sim.set_efficiency([1, 0, 1, 1.5, 0, 1, 1, 0, 1], [1, 0, 1] * 3)
    with pytest.raises(RuntimeError, match=r"memory\[attention\].exponent must be in \(0, 1\], got 0"):
        torch.ops.npusim_sim.set_efficiency([1, 0, 1] * 3, [1, 0, 1, 1, 0, 1, 1, 0, 0])
    with pytest.raises(RuntimeError, match="op_class must be 0"):
        sim.kernel_time_ns(1, 1, 0, 3)
    custom = efficiency.Efficiency(compute=(efficiency.FULL, efficiency.Curve(0.5), efficiency.FULL), name="half")
    sim.set_efficiency(custom)
    sim.set_chip("h100-sxm5-80gb")  # a custom table stays
    assert sim.efficiency_mode() == "custom" and sim.get_efficiency() == custom
    h100 = chips.PRESETS["h100-sxm5-80gb"]
    assert sim.kernel_time_ns(1e12, 0, 1, 1) == efficiency._round_ns(1e12 / (h100.peak_flops_bf16 * 0.5) * 1e9 + 5000)


def test_per_process_and_environment(fresh_python):
    code = """
        import warnings, torch, torch_npu_sim
        from torch_npu_sim import simulation as sim
        from torch_npu_sim.simulation import efficiency
        print(sim.get_chip().name, sim.efficiency_mode(), sim.get_efficiency().name)
        print(sim.kernel_time_ns(1e12, 1e6, 1, 1))
    """
    env = {"NPUSIM_CHIP": "h100-sxm5-80gb", "NPUSIM_EFFICIENCY": "calibrated"}
    r = fresh_python(code, env)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.split("\n")[:2]
    assert first == "h100-sxm5-80gb calibrated h100-sxm5-80gb"
    h100 = chips.PRESETS["h100-sxm5-80gb"]
    assert int(second) == efficiency.predict_time_ns(1e12, 1e6, 1, 1, h100, efficiency.TABLES["h100-sxm5-80gb"])
    # this process is unaffected
    assert sim.efficiency_mode() == "roofline"
    r = fresh_python(code, {"NPUSIM_CHIP": "h100-sxm5-80gb", "NPUSIM_EFFICIENCY": "fast"})
    assert r.returncode == 0, r.stderr
    assert "NPUSIM_EFFICIENCY" in r.stderr + r.stdout and "'fast'" in r.stderr + r.stdout
    assert r.stdout.split("\n")[0] == "h100-sxm5-80gb roofline roofline"
    r = fresh_python(code, {"NPUSIM_EFFICIENCY": "roofline"})
    assert r.returncode == 0 and r.stdout.split("\n")[0].endswith("roofline roofline"), r.stderr


def test_graph_replay_charges_each_node_with_its_class(chip_state):
    chip, table = use("h100-sxm5-80gb", "calibrated")
    a = torch.randn(64, 32, device="npusim", dtype=torch.bfloat16)
    b = torch.randn(32, 48, device="npusim", dtype=torch.bfloat16)
    g = torch.npusim.NPUGraph()
    with torch.npusim.graph(g):
        c = a @ b
        d = c + c
    torch.npusim.synchronize()
    before = sim.sim_time_ns()
    g.replay()
    torch.npusim.synchronize()
    latency = round(chip.launch_latency_s * 1e9)
    mm = efficiency.predict_time_ns(2 * 64 * 32 * 48, 2 * (64 * 32 + 32 * 48 + 64 * 48), 1, 1, chip, table)
    add = efficiency.predict_time_ns(64 * 48, 3 * 2 * 64 * 48, 1, 0, chip, table)
    assert sim.sim_time_ns() - before == latency + (mm - latency) + (add - latency)
