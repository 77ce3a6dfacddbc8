"""Collectives captured in npusim graphs, on real ranks.

Random programs (hypothesis: collective kinds, dtypes, sizes, reduce ops, roots, compute
between the calls, calls on a side stream joined through events, several replays with
new inputs) are captured once and replayed; each replay must equal the same program run
eagerly on npusim (whose collectives the fuzzer checks against gloo), bit for bit. Every
rank runs every program in one launch; ranks compare locally and report. Values stay
small integers, so every result is exact in every dtype whatever the reduction order.
"""
import json

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from launcher import assert_clean, describe, launch

KINDS = ("all_reduce", "all_gather_into_tensor", "reduce_scatter_tensor", "broadcast", "all_to_all_single",
         "all_reduce_coalesced", "compute")
OPS = ("SUM", "MIN", "MAX")
DTYPES = ("float32", "bfloat16", "int32", "int64", "float64")


@st.composite
def steps(draw, world):
    kind = draw(st.sampled_from(KINDS))
    return {"kind": kind, "op": draw(st.sampled_from(OPS)), "root": draw(st.integers(0, world - 1)),
            "side_stream": draw(st.booleans())}


@st.composite
def graph_programs(draw, world):
    return {"dtype": draw(st.sampled_from(DTYPES)), "per_rank": draw(st.integers(1, 40)),
            "replays": draw(st.integers(1, 3)), "steps": draw(st.lists(steps(world), min_size=1, max_size=5))}


def programs_for(world: int, count: int) -> list[dict]:
    """`count` programs from hypothesis (fixed seed: the same programs every run)."""
    found = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @given(graph_programs(world))
    def collect(program):
        found.append(program)

    collect()
    return found


RANK_SCRIPT = """
PROGRAMS = json.loads(os.environ["GRAPH_PROGRAMS"])
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
torch.npusim.set_device(RANK)
MOD = 17  # values stay small integers: exact in bfloat16 whatever the order of a sum

def step(x, s):
    kind, op = s["kind"], getattr(dist.ReduceOp, s["op"])
    if kind == "compute":
        return torch.remainder(x * 3 + RANK, MOD)
    if kind == "all_reduce":
        y = x.clone(); dist.all_reduce(y, op=op); return y
    if kind == "all_reduce_coalesced":
        a, b = x[: len(x) // 2].clone(), x[len(x) // 2:].clone()
        dist.all_reduce_coalesced([a, b], op=op)
        return torch.cat([a, b])
    if kind == "all_gather_into_tensor":
        out = x.new_empty(WORLD * x.numel()); dist.all_gather_into_tensor(out, x)
        return torch.remainder(out.view(WORLD, -1).sum(0), MOD).to(x.dtype)
    if kind == "reduce_scatter_tensor":
        out = x.new_empty(x.numel() // WORLD); dist.reduce_scatter_tensor(out, x, op=op)
        return out.repeat(WORLD)
    if kind == "broadcast":
        y = x.clone(); dist.broadcast(y, src=s["root"]); return y + RANK
    if kind == "all_to_all_single":
        out = torch.empty_like(x); dist.all_to_all_single(out, x); return out
    raise ValueError(kind)

def run(program, x):
    for s in program["steps"]:
        if s["side_stream"]:  # the call on a side stream, joined to the current one by events
            side = torch.npusim.Stream()
            side.wait_stream(torch.npusim.current_stream())
            with torch.npusim.stream(side):
                x = step(x, s)
            torch.npusim.current_stream().wait_stream(side)
        else:
            x = step(x, s)
        x = torch.remainder(x, MOD)
    return x

def inputs(program, replay):
    g = torch.Generator().manual_seed(1000 * replay + RANK)
    n = program["per_rank"] * WORLD
    return torch.randint(0, MOD, (n,), generator=g).to(getattr(torch, program["dtype"]))

problems, replays = [], 0
for index, program in enumerate(PROGRAMS):
    static = inputs(program, 0).to("npusim")
    graph = torch.npusim.NPUGraph()
    with torch.npusim.graph(graph):
        out = run(program, static)
    for r in range(program["replays"]):
        fresh = inputs(program, r)
        static.copy_(fresh)
        graph.replay()
        replays += 1
        eager = run(program, fresh.to("npusim"))  # the oracle, issued between replays
        if not torch.equal(out.cpu(), eager.cpu()):
            problems.append(f"program {index} replay {r}: {program}: replay {out.cpu().tolist()[:8]} "
                            f"vs eager {eager.cpu().tolist()[:8]}")
report(problems=problems, replays=replays, programs=len(PROGRAMS))
dist.destroy_process_group()
"""


@pytest.mark.parametrize("world,count", [(2, 40), (3, 25)])
def test_replayed_collectives_equal_eager_ones(world, count):
    programs = programs_for(world, count)
    outcomes = launch(RANK_SCRIPT, world, env={"GRAPH_PROGRAMS": json.dumps(programs)}, timeout=240)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("programs") == count, describe(outcomes)
        assert o.result("replays") == sum(p["replays"] for p in programs)
        assert o.result("problems") == [], describe(outcomes)


MISMATCHED = """
dist.init_process_group("npusim", timeout=timedelta(seconds=20))
torch.npusim.set_device(RANK)
x = torch.ones(8, device="npusim")
graph = torch.npusim.NPUGraph()
with torch.npusim.graph(graph):  # the ranks capture different collectives
    if RANK == 0:
        dist.all_reduce(x)
    else:
        dist.broadcast(x, src=0)
try:
    graph.replay()
    report(error=None)
except Exception as e:
    report(error=f"{type(e).__name__}: {e}")
try:  # point-to-point messages are not recorded
    with torch.npusim.graph(torch.npusim.NPUGraph()):
        dist.send(x, dst=1 - RANK)
    report(send=None)
except RuntimeError as e:
    report(send=str(e))
"""


def test_a_replay_whose_ranks_captured_different_collectives_fails_clearly_and_send_is_refused():
    outcomes = launch(MISMATCHED, 2, timeout=120)
    assert_clean(outcomes)
    errors = [o.result("error") for o in outcomes]
    assert all(e and "mismatched collectives" in e for e in errors), describe(outcomes)
    for o in outcomes:
        assert "SEND cannot be captured" in o.result("send"), describe(outcomes)
