"""Collectives in cost-only mode and under torch.distributed._time_estimator, on real ranks.

Cost-only collectives move no payload but still meet: random sequences of collectives must be
charged exactly what the same sequence with values is charged; mismatched collectives still
fail, within the timeout. The time estimator runs nothing and returns what a real run charges.
"""
import json
import os
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from launcher import assert_clean, describe, launch  # noqa: E402

PROGRAM = '''
from torch_npu_sim import simulation as sim
sim.set_chip("h100-sxm5-80gb"); sim.enable()
dist.init_process_group("npusim", timeout=timedelta(seconds=30))
torch.npusim.set_device(RANK)
steps = json.loads(os.environ["STEPS"])

def run():
    for op, n, dtype in steps:
        dt = getattr(torch, dtype)
        x = torch.ones(n * WORLD, dtype=dt, device="npusim")
        if op == "all_reduce":
            dist.all_reduce(x)
        elif op == "all_gather":
            out = torch.empty(n * WORLD * WORLD, dtype=dt, device="npusim")
            dist.all_gather_into_tensor(out, x)
        elif op == "reduce_scatter":
            out = torch.empty(n, dtype=dt, device="npusim")
            dist.reduce_scatter_tensor(out, x)
        elif op == "broadcast":
            dist.broadcast(x, src=0)
        elif op == "all_to_all":
            out = torch.empty_like(x)
            dist.all_to_all_single(out, x)
    torch.npusim.synchronize()

def charges():
    return sorted([s.name, s.kind, s.count, s.bytes, s.sim_ns] for s in sim.breakdown() if s.kind == "collective")

sim.reset(); run(); real = (charges(), sim.sim_time_ns())
dist.barrier()
sim.reset()
with sim.cost_only():
    run()
costed = (charges(), sim.sim_time_ns())
report(real=real, costed=costed)
dist.destroy_process_group()
'''

ops = st.sampled_from(["all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all"])
steps = st.lists(st.tuples(ops, st.integers(1, 300_000), st.sampled_from(["float32", "bfloat16"])), min_size=1,
                 max_size=6)


@settings(max_examples=5, deadline=None)
@given(program=steps, world=st.sampled_from([2, 3]))
def test_cost_only_collectives_are_charged_as_with_values(program, world):
    outcomes = launch(PROGRAM, world, env={"STEPS": json.dumps(program)}, timeout=180)
    assert_clean(outcomes)
    for o in outcomes:
        real, costed = o.result("real"), o.result("costed")
        assert costed == real, describe(outcomes)
        assert len(real[0]) >= 1


MISMATCH = '''
from torch_npu_sim import simulation as sim
dist.init_process_group("npusim", timeout=timedelta(seconds=10))
torch.npusim.set_device(RANK)
sim.set_cost_only(True)
x = torch.ones(1024, device="npusim")
t0 = time.time()
try:
    if RANK == 0:
        dist.all_reduce(x)
    else:
        out = torch.empty(1024 * WORLD, device="npusim")
        dist.all_gather_into_tensor(out, x)
    torch.npusim.synchronize()
    report(error=None)
except Exception as e:
    report(error=str(e)[:500], seconds=time.time() - t0)
os._exit(0)
'''


def test_mismatched_collectives_still_fail_in_cost_only_mode():
    outcomes = launch(MISMATCH, 2, timeout=120)
    assert_clean(outcomes)
    for o in outcomes:
        error = o.result("error")
        assert error is not None, describe(outcomes)
        assert o.result("seconds") < 60


ESTIMATE = '''
from torch_npu_sim import simulation as sim
sim.set_chip("h100-sxm5-80gb"); sim.enable()
dist.init_process_group("npusim", timeout=timedelta(seconds=30))
torch.npusim.set_device(RANK)
sizes = [1 << 10, 1 << 20, 3 << 20]
x = [torch.full((n,), float(RANK + 1), device="npusim") for n in sizes]
with dist.distributed_c10d._time_estimator() as cm:
    for t in x:
        dist.all_reduce(t)
unchanged = all(bool((t == RANK + 1).all()) for t in x)
torch.npusim.synchronize(); sim.reset()
for t in x:
    dist.all_reduce(t)
torch.npusim.synchronize()
charged_us = sum(s.sim_ns for s in sim.breakdown() if s.kind == "collective") / 1e3
total = sum(range(1, WORLD + 1))
report(estimate=cm.estimated_time, charged_us=charged_us, unchanged=unchanged,
       reduced=all(bool((t == total).all()) for t in x))
dist.destroy_process_group()
'''


def test_time_estimator_runs_nothing_and_returns_the_charged_time():
    outcomes = launch(ESTIMATE, 2, timeout=120)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("unchanged") and o.result("reduced"), describe(outcomes)
        assert o.result("estimate") > 0
        assert o.result("estimate") == pytest.approx(o.result("charged_us"), rel=1e-6)


FSDP_STEP = '''
import torch.nn as nn
from torch.distributed.fsdp import fully_shard
from torch_npu_sim import simulation as sim
from torch_npu_sim.simulation import chakra
from torch_npu_sim.simulation.trace import record_activities
sim.set_chip("h100-sxm5-80gb")
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
torch.npusim.set_device(RANK)
sim.set_cost_only(True)
layers = [nn.Sequential(nn.Linear(4096, 4096), nn.GELU()) for _ in range(6)]
model = nn.Sequential(*layers).to("npusim")
for layer in layers:
    fully_shard(layer)
fully_shard(model)
x = torch.empty(8192, 4096, device="npusim")
model(x).sum().backward()  # FSDP's lazy initialisation outside the recording
torch.npusim.synchronize(); sim.reset()
with record_activities() as rec:
    model(x).sum().backward()
    torch.npusim.synchronize()
acts = [a for a in rec.activities if a.device == RANK]
start, end = min(a.sim_start_ns for a in acts), max(a.sim_end_ns for a in acts)
coll = [a for a in acts if a.kind == "collective"]
kern = [a for a in acts if a.kind == "kernel" and a.stream_id not in {c.stream_id for c in coll}]
overlapping = sum(1 for c in coll if any(k.sim_start_ns < c.sim_end_ns and c.sim_start_ns < k.sim_end_ns for k in kern))
path = os.path.join(os.environ["OUT"], f"fsdp.{RANK}.et")
chakra.write_chakra_trace(path, acts, rank=RANK, world_size=WORLD)
_, nodes = chakra.read_chakra_trace(path)
report(span_ns=end - start, busy_ns=sum(a.sim_end_ns - a.sim_start_ns for a in acts), collectives=len(coll),
       overlapping=overlapping, streams=len({a.stream_id for a in acts}),
       critical_path_us=chakra.critical_path_us(nodes), span_us=round(end / 1e3) - round(start / 1e3))
dist.destroy_process_group()
'''


def test_fsdp2_prefetching_overlaps_in_the_simulated_timeline(tmp_path):
    """FSDP2's all-gathers and reduce-scatters run on their own streams: in cost-only mode their
    simulated time overlaps the compute, and the Chakra graph of the step has its critical path."""
    outcomes = launch(FSDP_STEP, 2, env={"OUT": str(tmp_path)}, timeout=240)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("collectives") >= 12, describe(outcomes)  # an all-gather and a reduce-scatter per layer
        assert o.result("streams") >= 2
        assert o.result("overlapping") >= 1
        assert o.result("span_ns") < o.result("busy_ns")  # overlap: the step is shorter than its work summed
        assert abs(o.result("critical_path_us") - o.result("span_us")) <= 1
