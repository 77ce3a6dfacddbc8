"""Survivor mode (torch_npu_sim.distributed.survivor.SurvivorGroup) on real processes: a rank
killed between or during collectives, the survivors' results (equal on every survivor,
the survivors' sum), the failed ranks each Work reports, explicit deactivation, and a
replacement process that joins, is healed by broadcast and is counted by the next
collective. The store lives in the test process, so any rank may die."""
import os
import subprocess
import sys
from datetime import timedelta

import pytest
import torch.distributed as dist

from launcher import describe, launch

PRELUDE = """
from torch_npu_sim.distributed.survivor import SurvivorGroup
store = dist.TCPStore("127.0.0.1", int(os.environ["STORE_PORT"]), is_master=False, timeout=timedelta(seconds=60))
"""


@pytest.fixture
def store():
    s = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=60))
    yield s
    del s


def survivors_ok(outcomes, victim):
    for o in outcomes:
        if o.rank != victim:
            assert o.returncode == 0 and not o.killed, describe(outcomes)
    return [o for o in outcomes if o.rank != victim]


@pytest.mark.parametrize("transport,how", [("shm", "sigkill"), ("tcp", "sigkill"), ("shm", "exit"), ("tcp", "sigstop"),
                                            ("tcp", "injected")])
def test_next_all_reduce_is_the_survivors_sum(store, transport, how):
    code = PRELUDE + """
# a stopped rank is found by the group's timeout: keep it short for that case
g = SurvivorGroup(store, RANK, WORLD, timeout=timedelta(seconds=3 if os.environ["HOW"] == "sigstop" else 20))
x = torch.full((4,), float(RANK + 1), device=f"npusim:{RANK}")
dist.all_reduce(x, group=g)
report(first=x.tolist())
if RANK == 1:
    if os.environ["HOW"] == "exit":
        os._exit(0)
    if os.environ["HOW"] == "injected":  # killed inside its next all_reduce, by the transport
        from torch_npu_sim.distributed import faults
        faults.inject("kill", op="all_reduce", call=1)
    else:
        os.kill(os.getpid(), 19 if os.environ["HOW"] == "sigstop" else 9)
x = torch.full((4,), float(RANK + 1), device=f"npusim:{RANK}")
work = dist.all_reduce(x, group=g, async_op=True)
work.wait()
report(second=x.tolist(), failed=work.failed_ranks, active=g.active_ranks())
y = torch.full((2,), float(RANK + 1))
work = dist.all_reduce(y, op=dist.ReduceOp.AVG, group=g, async_op=True)
work.wait()
outs = [torch.full((2,), -1.0) for _ in range(WORLD)]
dist.all_gather(outs, torch.full((2,), float(RANK)), group=g)
b = torch.full((3,), float(RANK))
dist.broadcast(b, group_src=2, group=g)
dist.barrier(group=g)
report(avg=y.tolist(), failed_after=work.failed_ranks, gathered=[o.tolist() for o in outs], bcast=b.tolist())
"""
    env = {"STORE_PORT": str(store.port), "NPUSIM_TRANSPORT": transport, "HOW": how}
    # a stopped victim is killed once the survivors are done; an exiting one ends itself
    outcomes = launch(code, 3, env=env, timeout=90, linger=1.0 if how == "sigstop" else 0.0)
    for o in survivors_ok(outcomes, victim=1):
        assert o.result("first") == [6.0] * 4
        assert o.result("second") == [4.0] * 4  # ranks 0 and 2: 1 + 3
        assert o.result("failed") == [1] and o.result("active") == [0, 2]
        assert o.result("avg") == [2.0, 2.0] and o.result("failed_after") == []
        assert o.result("gathered") == [[0.0, 0.0], [0.0, 0.0], [2.0, 2.0]]  # a gone rank's slot holds zeros
        assert o.result("bcast") == [2.0] * 3


def test_a_rank_killed_during_collectives_leaves_equal_results_on_the_survivors(store):
    # The victim dies at an unknown point inside a stream of large all_reduces: whatever
    # each survivor got for each call, it is the same on every survivor and is either the
    # full sum (the call finished with the victim) or the survivors' sum.
    code = PRELUDE + """
import threading
g = SurvivorGroup(store, RANK, WORLD, timeout=timedelta(seconds=20))
if RANK == 2:
    threading.Timer(0.3, lambda: os.kill(os.getpid(), 9)).start()
sums, failed = [], []
for i in range(40):
    x = torch.full((1 << 18,), float(RANK + 1) * (i + 1), device=f"npusim:{RANK}")
    w = dist.all_reduce(x, group=g, async_op=True)
    w.wait()
    assert bool((x == x[0]).all()), "a partial result"
    sums.append(x[0].item() / (i + 1))
    failed.append(w.failed_ranks)
report(sums=sums, failed=failed, active=g.active_ranks())
"""
    outcomes = launch(code, 4, env={"STORE_PORT": str(store.port)}, timeout=120)
    survivors = survivors_ok(outcomes, victim=2)
    sums = [o.result("sums") for o in survivors]
    assert all(s == sums[0] for s in sums), describe(outcomes)
    assert set(sums[0]) <= {10.0, 7.0} and sums[0][-1] == 7.0
    assert sums[0] == sorted(sums[0], reverse=True)  # full sums, then survivors' sums only
    failed = [o.result("failed") for o in survivors]
    assert all(f == failed[0] for f in failed) and sum(f == [2] for f in failed[0]) == 1
    assert all(o.result("active") == [0, 1, 3] for o in survivors)


def test_all_gather_run_again_gives_every_survivor_zeros_in_the_gone_slot(store):
    # Each rank's output buffers start with its own values; rank 1 dies before the all_gather,
    # which then runs again over the survivors. Every survivor ends with the same outputs,
    # zeros in rank 1's slot, whatever its buffers held before.
    code = PRELUDE + """
g = SurvivorGroup(store, RANK, WORLD, timeout=timedelta(seconds=20))
dist.all_reduce(torch.ones(1), group=g)
if RANK == 1:
    os.kill(os.getpid(), 9)
outs = [torch.full((2,), 100.0 + RANK, device=f"npusim:{RANK}") for _ in range(WORLD)]
w = dist.all_gather(outs, torch.full((2,), float(RANK + 1), device=f"npusim:{RANK}"), group=g, async_op=True)
w.wait()
flat = torch.full((WORLD * 2,), 100.0 + RANK)
g._allgather_base(flat, torch.full((2,), float(RANK + 1))).wait()  # the tensor form (a method: see survivor.py)
report(gathered=[o.tolist() for o in outs], failed=w.failed_ranks, flat=flat.tolist())
"""
    outcomes = launch(code, 3, env={"STORE_PORT": str(store.port)}, timeout=90)
    for o in survivors_ok(outcomes, victim=1):
        assert o.result("failed") == [1]
        assert o.result("gathered") == [[1.0, 1.0], [0.0, 0.0], [3.0, 3.0]], describe(outcomes)
        assert o.result("flat") == [1.0, 1.0, 0.0, 0.0, 3.0, 3.0], describe(outcomes)


WAIT_FOR_A_DECISION = """
def wait_for_a_decision():  # generation 0's decision is in the store (a look inside the group's protocol)
    dist.PrefixStore("npusim-survivor/survivors/", store).wait(["gen/0/decision"], timedelta(seconds=60))
"""


def test_a_membership_change_never_takes_a_failure_decision_for_its_own(store):
    # Rank 3 dies; rank 2, in its next all_reduce, records the failure decision for the
    # generation. Only then do ranks 0 and 1 retire rank 2: their change must still be made
    # (after the failure), so rank 2 is excluded and the next sum is over ranks 0 and 1 alone.
    code = PRELUDE + WAIT_FOR_A_DECISION + """
g = SurvivorGroup(store, RANK, WORLD, timeout=timedelta(seconds=20))
dist.all_reduce(torch.ones(1), group=g)
if RANK == 3:
    os.kill(os.getpid(), 9)
if RANK == 2:
    try:
        dist.all_reduce(torch.ones(1), group=g)
        report(excluded="no", active=g.active_ranks())
    except dist.DistBackendError as e:
        report(excluded=str(e))
    sys.exit(0)
wait_for_a_decision()
g.deactivate([2])
x = torch.full((1,), float(RANK + 1))
w = dist.all_reduce(x, group=g, async_op=True)
w.wait()
report(total=x.item(), active=g.active_ranks(), failed=w.failed_ranks)
"""
    outcomes = launch(code, 4, env={"STORE_PORT": str(store.port)}, timeout=90)
    for o in outcomes[:3]:
        assert o.returncode == 0 and not o.killed, describe(outcomes)
    assert "excluded from the group" in outcomes[2].result("excluded"), describe(outcomes)
    for o in outcomes[:2]:
        assert o.result("active") == [0, 1] and o.result("total") == 3.0, describe(outcomes)


def test_a_failed_collective_never_takes_a_membership_change_for_a_failure(store):
    # Rank 3's barrier message to one rank is lost, so that rank fails the first all_reduce's
    # barrier while the others finish it and deactivate rank 3. Whichever decides first,
    # every rank keeps the first sum, makes the change once, and sums over ranks 0-2 next.
    code = PRELUDE + WAIT_FOR_A_DECISION + """
from torch_npu_sim.distributed import faults
g = SurvivorGroup(store, RANK, WORLD, timeout=timedelta(seconds=20))
if RANK == 3:
    faults.inject("drop", op="barrier", call=1)
x = torch.full((1,), float(RANK + 1))
dist.all_reduce(x, group=g)
report(first=x.item())
if RANK == 3:
    wait_for_a_decision()
    sys.exit(0)
g.deactivate([3])
y = torch.full((1,), float(RANK + 1))
dist.all_reduce(y, group=g)
report(second=y.item(), active=g.active_ranks())
"""
    outcomes = launch(code, 4, env={"STORE_PORT": str(store.port)}, timeout=90)
    assert "injected fault on rank 3: drop" in outcomes[3].stderr, describe(outcomes)
    for o in outcomes:
        assert o.returncode == 0 and not o.killed, describe(outcomes)
        assert o.result("first") == 10.0
    for o in outcomes[:3]:
        assert o.result("second") == 6.0 and o.result("active") == [0, 1, 2], describe(outcomes)


def test_deactivate_then_a_replacement_joins_and_is_healed(store):
    # Process 3 is a replacement for rank 2: it waits until rank 2 is gone, then joins as rank 2.
    code = PRELUDE + """
ME = 2 if RANK == 3 else RANK
if RANK == 3:
    store.wait(["victim-gone"], timedelta(seconds=60))
    start = time.time()
    g = SurvivorGroup(store, 2, 3, timeout=timedelta(seconds=30), join=True)
    state = torch.zeros(5, device="npusim:3")
else:
    g = SurvivorGroup(store, RANK, 3, timeout=timedelta(seconds=30))
    state = torch.full((5,), 7.0, device=f"npusim:{RANK}")
    if RANK == 2:
        x = torch.ones(1)
        dist.all_reduce(x, group=g)   # completes
        try:
            dist.all_reduce(x, group=g)  # the others deactivated this rank meanwhile
            report(excluded="no")
        except dist.DistBackendError as e:
            report(excluded=str(e))
        store.set("victim-gone", "1")
        sys.exit(0)
    x = torch.ones(1)
    dist.all_reduce(x, group=g)
    g.deactivate([2])
    x = torch.ones(1)
    dist.all_reduce(x, group=g)
    report(without=x.item(), active=g.active_ranks())
    store.wait(["victim-gone"], timedelta(seconds=60))
    g.activate([2])
if ME != 2 or RANK == 3:
    g.heal([state], src=0)
    x = torch.full((1,), float(ME + 1))
    w = dist.all_reduce(x, group=g, async_op=True)
    w.wait()
    report(state=state.tolist(), total=x.item(), active_after=g.active_ranks(), generation=g.generation)
"""
    outcomes = launch(code, 4, env={"STORE_PORT": str(store.port)}, timeout=120)
    for o in outcomes:
        assert o.returncode == 0 and not o.killed, describe(outcomes)
    assert "excluded from the group" in outcomes[2].result("excluded")
    for o in (outcomes[0], outcomes[1]):
        assert o.result("without") == 2.0 and o.result("active") == [0, 1]
    for o in (outcomes[0], outcomes[1], outcomes[3]):
        assert o.result("state") == [7.0] * 5  # the replacement was healed from rank 0
        assert o.result("total") == 6.0 and o.result("active_after") == [0, 1, 2]
        assert o.result("generation") == outcomes[0].result("generation")


def test_bad_calls_are_named_errors(store):
    code = PRELUDE + """
g = SurvivorGroup(store, RANK, WORLD, timeout=timedelta(seconds=20))
errors = {}
for name, call in {
    "deactivate_self": lambda: g.deactivate([RANK]),
    "deactivate_unknown": lambda: g.deactivate([7]),
    "activate_member": lambda: g.activate([0]),
    "reduce_scatter": lambda: dist.reduce_scatter_tensor(torch.empty(1), torch.ones(WORLD), group=g),
    "reduce_scatter_method": lambda: g._reduce_scatter_base(torch.empty(1), torch.ones(WORLD)),
    "bad_root": lambda: dist.broadcast(torch.ones(1), group_src=5, group=g),
}.items():
    try:
        call()
        errors[name] = "none"
    except Exception as e:
        errors[name] = type(e).__name__ + ": " + str(e)
x = torch.ones(2)
dist.all_reduce(x, group=g)
report(errors=errors, sum=x.tolist())
"""
    outcomes = launch(code, 2, env={"STORE_PORT": str(store.port)}, timeout=60)
    for o in outcomes:
        assert o.returncode == 0, describe(outcomes)
        e = o.result("errors")
        assert e["deactivate_self"].startswith("ValueError") and "itself" in e["deactivate_self"]
        assert e["deactivate_unknown"].startswith("ValueError")
        assert e["activate_member"].startswith("ValueError")
        # the method raises NotImplementedError; torch's function reaches the group through
        # the c10d dispatcher, which finds no backend for it
        assert e["reduce_scatter"].startswith(("NotImplementedError", "RuntimeError: No backend type"))
        assert e["reduce_scatter_method"].startswith("NotImplementedError")
        assert e["bad_root"] != "none"
        assert o.result("sum") == [2.0, 2.0]


def test_ddp_example_in_survivor_mode_loses_no_step():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, os.path.join(root, "examples", "elastic_ddp.py"), "--mode", "survivor",
                           "--victim", "1", "--timeout", "90"], capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "weights identical on every survivor: True" in proc.stdout
    assert "steps done again: 0" in proc.stdout
    assert proc.stdout.count("completed over the survivors") == 3
