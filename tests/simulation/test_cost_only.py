"""Cost-only mode: the real program runs, every launch is charged, nothing is computed.

The oracle is the same program run with values on npusim (cost model on): random programs
(ops, shapes, dtypes, views and in-place updates) must give results with the same sizes,
strides, offsets, dtypes and storage sharing, the same per-op charges and simulated time, and
no more device memory, while the host commits none of the device memory.
"""
import resource

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torch_npu_sim import simulation as sim


@pytest.fixture
def h100():
    previous = sim.get_chip()
    sim.set_chip("h100-sxm5-80gb")
    sim.enable()
    sim.reset()
    yield
    sim.set_cost_only(False)
    torch.npusim.empty_cache()  # the large tests' memory back to the runtime before the capacity shrinks
    sim.disable()
    sim.set_chip(previous)
    sim.reset()


# ---- random programs ------------------------------------------------------------------------
# A program is a list of steps over a growing list of tensors; each step names an op and which
# earlier tensors it reads (by index modulo the list's length), so every program is valid.

OPS = ("matmul", "add", "sub", "mul", "div", "div_", "add_scalar", "mul_", "relu", "softmax", "sum", "transpose_contig", "slice", "cat",
       "index_select", "layer_norm", "to_other_dtype", "expand_contig", "where", "silu_mul", "view_flat")


def run_program(steps, dims, dtype, device="npusim"):
    gen = torch.Generator().manual_seed(0)
    a, b = dims
    tensors = [torch.randn(a, b, generator=gen).to(dtype).to(device), torch.randn(a, b, generator=gen).to(dtype).to(device)]
    for op, i, j in steps:
        x, y = tensors[i % len(tensors)], tensors[j % len(tensors)]
        x = x.reshape(1) if x.dim() == 0 else x
        if op == "matmul":
            fits = x.dim() == 2 and y.dim() == 2 and x.shape[1] == y.shape[1] and x.dtype == y.dtype
            out = x @ y.transpose(-2, -1) if fits else x.float().sum()
        elif op == "add":
            out = x + y if x.shape == y.shape and x.dtype == y.dtype else x + 1
        elif op in ("sub", "mul", "div"):
            fn = {"sub": torch.sub, "mul": torch.mul, "div": torch.div}[op]
            out = fn(x, y) if x.shape == y.shape and x.dtype == y.dtype else fn(x, 3)
        elif op == "div_":
            out = x.div_(y) if x.shape == y.shape and x.dtype == y.dtype and x.is_floating_point() else x / 2
        elif op == "add_scalar":
            out = x + 0.5
        elif op == "mul_":
            out = x.mul_(2) if x.is_floating_point() else x * 2
        elif op == "relu":
            out = x.relu()
        elif op == "softmax":
            out = F.softmax(x.float(), dim=-1)
        elif op == "sum":
            out = x.sum(dim=0)
        elif op == "transpose_contig":
            out = x.t().contiguous() if x.dim() == 2 else x.clone()
        elif op == "slice":
            out = x[::2]
        elif op == "cat":
            out = torch.cat([x, x], 0)
        elif op == "index_select":
            index = torch.arange(x.shape[0] - 1, -1, -1, device=device)
            out = x.index_select(0, index)
        elif op == "layer_norm":
            out = F.layer_norm(x.float(), x.shape[-1:])
        elif op == "to_other_dtype":
            out = x.to(torch.float32 if x.dtype == torch.bfloat16 else torch.bfloat16)
        elif op == "expand_contig":
            out = x[:1].expand(3, *x.shape[1:]).contiguous()
        elif op == "where":
            out = torch.where(x > 0, x, torch.zeros_like(x))
        elif op == "silu_mul":
            out = F.silu(x) * x
        elif op == "view_flat":
            out = x.reshape(-1)
        tensors.append(out)
    return tensors


def describe(tensors):
    """Sizes, strides, offsets, dtypes and which results share storage."""
    storages = {}
    out = []
    for t in tensors:
        key = t.untyped_storage().data_ptr()
        out.append((tuple(t.shape), t.stride(), t.storage_offset(), t.dtype,
                    storages.setdefault(key, len(storages)), t.device))
    return out


def charges():
    return sorted((s.name, s.kind, s.count, s.flops, s.bytes, s.sim_ns) for s in sim.breakdown())


def measure(fn):
    torch.npusim.synchronize()
    sim.reset()
    torch.npusim.reset_peak_memory_stats()
    result = fn()
    torch.npusim.synchronize()
    return result, charges(), sim.sim_time_ns(), torch.npusim.max_memory_allocated()


programs = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=programs, dims=st.tuples(st.integers(1, 24), st.integers(1, 40)),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_random_programs_match_the_run_with_values(h100, steps, dims, dtype):
    real, real_charges, real_time, real_peak = measure(lambda: describe(run_program(steps, dims, dtype)))
    with sim.cost_only():
        costed, costed_charges, costed_time, costed_peak = measure(lambda: describe(run_program(steps, dims, dtype)))
    assert costed == real
    assert costed_charges == real_charges
    assert costed_time == real_time
    # CPU kernels run with values may allocate scratch space on the device; outputs never differ
    assert costed_peak <= real_peak


def test_a_model_far_larger_than_the_host_runs_without_committing_memory(h100):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with sim.cost_only():
        # 40 GiB of weights, activations and gradients on a 24 GiB host
        w = torch.empty(4096 * 4, 4096 * 4, dtype=torch.bfloat16, device="npusim", requires_grad=True)  # 512 MiB
        layers = [torch.empty_like(w).requires_grad_() for _ in range(40)]
        x = torch.empty(8192, 4096 * 4, dtype=torch.bfloat16, device="npusim")
        h = x
        for layer in layers:
            h = (h @ layer).relu()
        h.sum().backward()
        torch.npusim.synchronize()
        peak = torch.npusim.max_memory_allocated()
        grads = all(layer.grad is not None and layer.grad.shape == layer.shape for layer in layers)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grads
    assert peak > 40 * 2**30
    assert grown_mib < 1024, f"the host committed {grown_mib:.0f} MiB for {peak / 2**30:.1f} GiB of device memory"
    # 2 * 8192 * 16384^2 FLOPs per layer forward, twice that backward (input and weight gradients)
    matmul_flops = sum(s.flops for s in sim.breakdown() if s.name in ("aten::mm", "aten::matmul"))
    assert matmul_flops == pytest.approx(40 * 3 * 2 * 8192 * 16384 ** 2, rel=0.01)


def test_out_of_memory_happens_at_the_chip_capacity(h100):
    with sim.cost_only():
        keep = torch.empty(70 * 2**30, dtype=torch.uint8, device="npusim")
        with pytest.raises(torch.OutOfMemoryError, match="80.00 GiB"):
            torch.empty(20 * 2**30, dtype=torch.uint8, device="npusim")
        del keep


def test_host_reads_are_zero_placeholders_or_refused(h100):
    with sim.cost_only():
        x = torch.randn(8, 8, device="npusim")
        loss = (x @ x).pow(2).mean()
        assert loss.item() == 0.0
        assert int(torch.ones(2, dtype=torch.int64, device="npusim").sum()) == 0
        assert bool(torch.ones(2, device="npusim").any()) is False
        host = torch.full((8, 8), 3.0)
        host.copy_(x)
        assert (host == 0).all()
    with sim.cost_only(host_reads="error"):
        x = torch.randn(8, device="npusim")
        for read in (lambda: x.sum().item(), lambda: x.cpu(), lambda: bool((x > 0).any())):
            with pytest.raises(RuntimeError, match="npusim cost-only mode: .*reads a device value on the host"):
                read()
    assert sim.cost_only_host_reads() == "zeros"  # restored after the block


@pytest.mark.parametrize("program, op", [
    (lambda x: x.nonzero(), "aten::nonzero"),
    (lambda x: x[x > 0], "nonzero"),
    (lambda x: torch.masked_select(x, x > 0), "aten::masked_select"),
    (lambda x: torch.unique(x), "unique"),
])
def test_what_needs_values_is_refused_by_name(h100, program, op):
    with sim.cost_only():
        x = torch.randn(16, device="npusim")
        with pytest.raises(RuntimeError, match=f"npusim cost-only mode: .*{op}"):
            program(x)


def test_the_mode_is_a_scoped_switch(h100):
    assert not sim.is_cost_only()
    with sim.cost_only():
        assert sim.is_cost_only()
        with sim.cost_only():
            pass
        assert sim.is_cost_only()
    assert not sim.is_cost_only()
    x = torch.ones(4, device="npusim")
    assert (x + 1).sum().item() == 8  # values again
    with pytest.raises(TypeError):
        sim.set_cost_only(1)


def test_environment_variable(tmp_path):
    import subprocess
    import sys

    code = ("import torch, torch_npu_sim\nfrom torch_npu_sim import simulation as sim\n"
            "x = torch.randn(4, device='npusim')\nprint(sim.is_cost_only(), sim.enabled(), (x * 2).sum().item())\n")
    out = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "NPUSIM_COST_ONLY": "1"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "0.0"]


def test_profiler_and_chrome_trace_keep_working(h100, tmp_path):
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from torch_npu_sim.simulation import trace

    with sim.cost_only():
        x = torch.empty(4096, 4096, dtype=torch.bfloat16, device="npusim")
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.PrivateUse1]) as prof:
            for _ in range(3):
                y = x @ x
            torch.npusim.synchronize()
        with trace.record_activities() as rec:
            y = (x @ x).relu()
            torch.npusim.synchronize()
    kernels = {e.key: e for e in prof.key_averages() if e.device_type == DeviceType.PrivateUse1}
    assert kernels["aten::mm"].count == 3 and kernels["aten::mm"].self_device_time_total > 0
    names = [a.name for a in rec.activities]
    assert names == ["aten::mm", "aten::relu"]
    mm = rec.activities[0]
    assert mm.flops == 2 * 4096 ** 3 and mm.sim_end_ns - mm.sim_start_ns > 100_000  # ~140 us of H100 time
    path = trace.write_chrome_trace(str(tmp_path / "t.json"), rec.activities)
    events = [e for e in __import__("json").load(open(path))["traceEvents"] if e["ph"] == "X"]
    assert [e["name"] for e in events] == names
