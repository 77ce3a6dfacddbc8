"""Every coalesced collective on npusim gives what gloo gives, tensor for tensor.

Each rank runs the same calls through an npusim group and a gloo group over the same
ranks, on the same inputs, and compares. Shapes include the case where a wrong layout
raises no error (as many inputs as ranks, all of one shape), so a transposed output is
a failed comparison, not a lucky pass."""
import pytest

from launcher import assert_clean, describe, launch

COALESCED = """
import torch_npu_sim  # noqa: F401
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
gloo = dist.new_group(backend="gloo")
npu = dist.new_group(backend="npusim")
dev = torch.device("npusim", RANK % torch.npusim.device_count())

def inputs(shapes, salt):
    g = torch.Generator().manual_seed(1000 * salt + RANK)
    # integer values: sums are exact in any order, so results must be equal bit for bit
    return [torch.randint(-1000, 1000, s, generator=g).float() for s in shapes]

def run_both(name, fn, shapes, salt):
    cpu_result = fn(gloo, inputs(shapes, salt), "cpu")
    npu_result = fn(npu, [t.to(dev) for t in inputs(shapes, salt)], dev)
    for i, (a, b) in enumerate(zip(cpu_result, npu_result)):
        assert b.device == dev, (name, b.device)
        if not torch.equal(a, b.cpu()):
            report(mismatch=f"{name} shapes={shapes} output {i}: gloo {a.tolist()} npusim {b.cpu().tolist()}")
            return
    report(case=name + " " + str(shapes))

def all_reduce_coalesced(group, ts, device):
    dist.all_reduce_coalesced(ts, group=group)
    return ts

def all_gather_coalesced(group, ts, device):
    outs = [[torch.empty_like(t) for t in ts] for _ in range(WORLD)]  # [rank][input]
    dist.all_gather_coalesced(outs, ts, group=group)
    return [t for per_rank in outs for t in per_rank]

def manager_all_reduce(group, ts, device):
    with dist._coalescing_manager(group=group, async_ops=True) as cm:
        for t in ts:
            dist.all_reduce(t, group=group)
    cm.wait()
    return ts

def manager_all_gather_into_tensor(group, ts, device):
    outs = [torch.empty(WORLD * t.numel(), device=device) for t in ts]
    with dist._coalescing_manager(group=group, async_ops=True) as cm:
        for o, t in zip(outs, ts):
            dist.all_gather_into_tensor(o, t.reshape(-1), group=group)
    cm.wait()
    return outs

def manager_reduce_scatter_tensor(group, ts, device):
    outs = [torch.empty(t.numel() // WORLD, device=device) for t in ts]
    with dist._coalescing_manager(group=group, async_ops=True) as cm:
        for o, t in zip(outs, ts):
            dist.reduce_scatter_tensor(o, t.reshape(-1), group=group)
    cm.wait()
    return outs

square = [(4,)] * WORLD            # as many inputs as ranks, one shape: a layout error raises nothing
mixed = [(3,), (2, 5), (7,)]
divisible = [(WORLD * 3,), (WORLD * 5,), (WORLD,)]
cases = [("all_reduce_coalesced", all_reduce_coalesced, [square, mixed]),
         ("all_gather_coalesced", all_gather_coalesced, [square, mixed]),
         ("coalescing manager all_reduce", manager_all_reduce, [square, mixed]),
         ("coalescing manager all_gather_into_tensor", manager_all_gather_into_tensor, [square, divisible]),
         ("coalescing manager reduce_scatter_tensor", manager_reduce_scatter_tensor, [divisible])]
for k, (name, fn, shape_sets) in enumerate(cases):
    for j, shapes in enumerate(shape_sets):
        run_both(name, fn, shapes, salt=10 * k + j)
report(done=True)
dist.destroy_process_group()
"""


@pytest.mark.parametrize("world", [2, 3])
def test_coalesced_collectives_match_gloo(world):
    outcomes = launch(COALESCED, world, timeout=180)
    assert_clean(outcomes)
    for o in outcomes:
        mismatches = [r["mismatch"] for r in o.results if "mismatch" in r]
        assert not mismatches, f"rank {o.rank}:\n" + "\n".join(mismatches)
        cases = [r["case"] for r in o.results if "case" in r]
        assert len(cases) == 9 and o.result("done"), describe(outcomes)
