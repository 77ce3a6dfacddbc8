"""dist.shrink_group on npusim groups after real faults: a rank SIGKILLed (rank 0 too: the
store lives in the test process) or SIGSTOPped; the survivors shrink without restarting,
and every collective on the shrunk group gives the survivors' answer, on npusim and CPU
tensors, over shared memory and TCP. The DDP example (kill one of 4 ranks mid-training,
the survivors shrink and finish) runs as a test too."""
import os
import subprocess
import sys
from datetime import timedelta

import pytest
import torch.distributed as dist

from launcher import describe, launch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SURVIVORS_CHECK = """
import torch_npu_sim.distributed as npd
store = dist.TCPStore("127.0.0.1", int(os.environ["STORE_PORT"]), is_master=False, timeout=timedelta(seconds=60))
dist.init_process_group("npusim", store=store, rank=RANK, world_size=WORLD,
                        timeout=timedelta(seconds=float(os.environ.get("PG_TIMEOUT", "30"))))
VICTIM, SIG = int(os.environ["VICTIM"]), int(os.environ["FAULT_SIGNAL"])
dev = torch.device("npusim", RANK)
t = torch.ones(8, device=dev)
dist.all_reduce(t)
assert t[0].item() == WORLD
if RANK == VICTIM and os.environ.get("INJECT"):  # killed inside its next all_reduce, by the transport
    from torch_npu_sim.distributed import faults
    faults.inject("kill", op="all_reduce", call=1)
elif RANK == VICTIM:
    report(fault_at=time.time())
    os.kill(os.getpid(), SIG)
    time.sleep(60)
try:
    dist.all_reduce(t)
    report(error="none")
except Exception as e:
    report(error=type(e).__name__, failed=npd.failed_ranks(), health=npd.backend_of().health)
start = time.time()
dist.shrink_group([VICTIM], shrink_flags=int(os.environ.get("SHRINK_FLAGS", "0")))
report(shrink_s=time.time() - start)
r, w = dist.get_rank(), dist.get_world_size()
survivors = [x for x in range(WORLD) if x != VICTIM]
me = survivors[r]  # original rank
got = {}
for device in (dev, torch.device("cpu")):
    kind = device.type
    x = torch.full((5,), float(me + 1), device=device)
    dist.all_reduce(x)
    got[kind + "_sum"] = x.cpu().tolist()
    x = torch.full((3,), float(me + 1), device=device)
    dist.all_reduce(x, op=dist.ReduceOp.AVG if kind == "npusim" else dist.ReduceOp.MAX)
    got[kind + "_avg_or_max"] = x.cpu().tolist()
    x = torch.full((2,), float(me), device=device)
    dist.broadcast(x, src=w - 1)
    got[kind + "_bcast"] = x.cpu().tolist()
    out = torch.empty(w * 2, device=device)
    dist.all_gather_into_tensor(out, torch.full((2,), float(me), device=device))
    got[kind + "_gather"] = out.cpu().tolist()
    out = torch.empty(2, device=device)
    dist.reduce_scatter_tensor(out, torch.arange(2 * w, dtype=torch.float32, device=device) * (me + 1))
    got[kind + "_rs"] = out.cpu().tolist()
    out = torch.empty(w, device=device)
    dist.all_to_all_single(out, torch.full((w,), float(me), device=device) * 10 + torch.arange(w, device=device))
    got[kind + "_a2a"] = out.cpu().tolist()
    nxt, prv = (r + 1) % w, (r - 1) % w
    recv = torch.empty(1, device=device)
    reqs = dist.batch_isend_irecv([dist.P2POp(dist.isend, torch.full((1,), float(me), device=device), nxt),
                                   dist.P2POp(dist.irecv, recv, prv)])
    [q.wait() for q in reqs]
    got[kind + "_ring"] = recv.cpu().tolist()
dist.barrier()
report(me=me, new_rank=r, new_world=w, got=got, transport=npd.backend_of().transport)
dist.destroy_process_group()
"""


def expected(survivors: list[int], me: int, kind: str) -> dict:
    w, r = len(survivors), survivors.index(me)
    total = float(sum(s + 1 for s in survivors))
    return {
        kind + "_sum": [total] * 5,
        kind + "_avg_or_max": [total / w if kind == "npusim" else float(max(survivors) + 1)] * 3,
        kind + "_bcast": [float(survivors[-1])] * 2,
        kind + "_gather": [float(s) for s in survivors for _ in range(2)],
        kind + "_rs": [float(i) * total for i in range(2 * r, 2 * r + 2)],
        kind + "_a2a": [float(s * 10 + r) for s in survivors],
        kind + "_ring": [float(survivors[(r - 1) % w])],
    }


@pytest.fixture
def store():
    s = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=60))
    yield s
    del s


def run_and_check(store, world, victim, signal_number, transport, extra_env=None, timeout=120, linger=0.0):
    env = {"STORE_PORT": str(store.port), "VICTIM": str(victim), "FAULT_SIGNAL": str(signal_number),
           "NPUSIM_TRANSPORT": transport, **(extra_env or {})}
    outcomes = launch(SURVIVORS_CHECK, world, env=env, timeout=timeout, linger=linger)
    survivors = [r for r in range(world) if r != victim]
    for o in outcomes:
        if o.rank == victim:
            assert o.returncode == -signal_number or o.killed, describe(outcomes)
            continue
        assert o.returncode == 0 and not o.killed, describe(outcomes)
        assert o.result("error") == "DistBackendError", describe(outcomes)
        assert o.result("failed") == [victim] and o.result("health") == "failed"
        assert o.result("new_world") == len(survivors) and o.result("new_rank") == survivors.index(o.rank)
        assert o.result("transport") == transport
        got = o.result("got")
        for kind in ("npusim", "cpu"):
            for key, value in expected(survivors, o.rank, kind).items():
                assert got[key] == value, (o.rank, key, got[key], value)
    return outcomes


@pytest.mark.parametrize("transport", ["shm", "tcp"])
def test_shrink_after_sigkill_then_every_collective_is_the_survivors(store, transport):
    outcomes = run_and_check(store, 3, victim=1, signal_number=9, transport=transport)
    assert max(o.result("shrink_s") for o in outcomes if o.rank != 1) < 10


def test_shrink_after_an_injected_kill_mid_all_reduce(store):
    run_and_check(store, 3, victim=2, signal_number=9, transport="tcp",
                  extra_env={"INJECT": "1"})


def test_shrink_after_rank_0_is_killed(store):
    run_and_check(store, 4, victim=0, signal_number=9, transport="shm")


def test_shrink_with_abort_after_sigstop(store):
    # A stopped rank is found by the group's timeout; the survivors shrink it away while it is
    # still stopped (the launcher kills it once the survivors are done).
    run_and_check(store, 3, victim=2, signal_number=19, transport="shm",
                  extra_env={"PG_TIMEOUT": "3", "SHRINK_FLAGS": str(dist.distributed_c10d.SHRINK_ABORT)}, linger=1.0)


def test_shrink_of_a_subgroup_and_bad_calls(store):
    code = """
import torch_npu_sim.distributed as npd
store = dist.TCPStore("127.0.0.1", int(os.environ["STORE_PORT"]), is_master=False, timeout=timedelta(seconds=60))
dist.init_process_group("npusim", store=store, rank=RANK, world_size=WORLD, timeout=timedelta(seconds=30))
report(supports=dist.distributed_c10d._get_default_group()._get_backend(torch.device("cpu")).supports_shrinking)
sub = dist.new_group([1, 2, 3])
if RANK == 0:  # outside the subgroup: waits for the others, so its exit ends nothing early
    store.wait(["sub-done/1", "sub-done/2"], timedelta(seconds=90))
    sys.exit(0)
if RANK == 3:
    os.kill(os.getpid(), 9)
try:
    dist.all_reduce(torch.ones(1, device="npusim"), group=sub)
except Exception as e:
    report(error=type(e).__name__, failed=npd.failed_ranks(sub))
try:
    dist.shrink_group([dist.get_group_rank(sub, RANK)], group=sub)
except RuntimeError as e:
    report(self_exclusion=str(e))
small = dist.shrink_group([2], group=sub)
x = torch.full((2,), float(RANK), device="npusim")
dist.all_reduce(x, group=small)
report(sum=x.tolist(), size=small.size())
store.set(f"sub-done/{RANK}", "1")
"""
    outcomes = launch(code, 4, env={"STORE_PORT": str(store.port)}, timeout=120)
    assert outcomes[0].result("supports") is True
    assert outcomes[0].returncode == 0 and outcomes[3].returncode == -9, describe(outcomes)
    for o in outcomes[1:3]:
        assert o.returncode == 0 and not o.killed, describe(outcomes)
        assert o.result("error") == "DistBackendError" and o.result("failed") == [2]
        assert "exclusion list" in o.result("self_exclusion")
        assert o.result("sum") == [3.0, 3.0] and o.result("size") == 2


@pytest.mark.parametrize("victim", [2, 0])
def test_ddp_example_survives_a_killed_rank(victim):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "elastic_ddp.py"), "--victim", str(victim),
                           "--timeout", "90"], capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "weights identical on every survivor: True" in proc.stdout
    assert f"rank {victim} SIGKILLed at step 5 (exit code -9)" in proc.stdout
    assert proc.stdout.count("shrunk") == 3
