"""Faults on real processes: a rank SIGKILLed or SIGSTOPped mid-loop, mismatched
collectives, bounded waits, abort. Nothing may hang: the launcher kills any rank still
alive at its hard limit, and every assertion here is about the error the survivors get
and how fast they get it."""
import os

import pytest

from launcher import assert_clean, describe, launch

DETECTION_BOUND_S = 1.0  # a killed rank must be reported by every survivor within this

KILL_LOOP = """
import torch_npu_sim  # noqa: F401
dist.init_process_group("npusim", timeout=timedelta(seconds=30))
shm_after_init = sorted(f for f in os.listdir("/dev/shm") if f.startswith("npusim-"))
report(shm_after_init=shm_after_init)
VICTIM, SIG = 1, int(os.environ["FAULT_SIGNAL"])
t = torch.ones(1000, device=torch.device("npusim", RANK))
i = 0
try:
    while True:
        if RANK == VICTIM and i == 50:
            report(fault_at=time.time())
            os.kill(os.getpid(), SIG)
        work = dist.all_reduce(t, async_op=True)  # pending when the victim goes
        work.wait()
        i += 1
except Exception as e:
    report(error_at=time.time(), error_type=type(e).__name__, message=str(e), iteration=i)
start = time.time()
try:
    dist.all_reduce(t)
    report(next_error="none")
except Exception as e:
    report(next_error=type(e).__name__, next_after=time.time() - start, next_message=str(e))
start = time.time()
dist.destroy_process_group()
report(destroy_s=time.time() - start)
"""


def shm_segments():
    return {f for f in os.listdir("/dev/shm") if f.startswith("npusim-")}


@pytest.mark.parametrize("transport", ["shm", "tcp"])
def test_sigkill_mid_loop_is_reported_by_every_survivor_within_bound(transport):
    before = shm_segments()
    outcomes = launch(KILL_LOOP, 3, env={"NPUSIM_TRANSPORT": transport, "FAULT_SIGNAL": "9"}, timeout=90)
    victim, survivors = outcomes[1], [outcomes[0], outcomes[2]]
    assert victim.returncode == -9, describe(outcomes)
    fault_at = victim.result("fault_at")
    for s in survivors:
        assert s.returncode == 0 and not s.killed, describe(outcomes)
        assert s.result("error_type") == "DistBackendError", describe(outcomes)
        assert "rank 1" in s.result("message"), s.result("message")
        latency = s.result("error_at") - fault_at
        print(f"\n{transport}: rank {s.rank} learned of the kill after {latency * 1000:.1f} ms")
        assert 0 <= latency < DETECTION_BOUND_S
        assert s.result("next_error") == "DistBackendError"
        assert "rank 1" in s.result("next_message")
        assert s.result("next_after") < DETECTION_BOUND_S
        assert s.result("destroy_s") < 5
        assert s.result("shm_after_init") == []  # unlinked as soon as every rank mapped it
    assert shm_segments() <= before


def test_sigstop_is_reported_within_the_timeout():
    code = KILL_LOOP.replace("timedelta(seconds=30)", "timedelta(seconds=3)")
    outcomes = launch(code, 3, env={"FAULT_SIGNAL": "19"}, timeout=90, linger=1.0)
    victim, survivors = outcomes[1], [outcomes[0], outcomes[2]]
    assert victim.killed, "the stopped rank should still be stopped at the end"
    fault_at = victim.result("fault_at")
    for s in survivors:
        assert s.returncode == 0 and not s.killed, describe(outcomes)
        assert s.result("error_type") == "DistBackendError"
        message = s.result("message")
        assert "rank 1" in message and "Timed out" in message, message
        latency = s.result("error_at") - fault_at
        print(f"\nrank {s.rank}: error {latency:.2f} s after the stop (timeout 3 s): {message[:160]}")
        assert latency < 3.0 + 1.5
        assert s.result("next_error") == "DistBackendError"


MISMATCH = """
import torch_npu_sim  # noqa: F401
dist.init_process_group("npusim", timeout=timedelta(seconds=20))
dev = torch.device("npusim", RANK)
case = os.environ["CASE"]
odd = RANK == WORLD - 1
start = time.time()
try:
    if case == "size":
        dist.all_reduce(torch.ones(10 + 2 * odd, device=dev))
    elif case == "large size":
        dist.all_reduce(torch.ones(100000 + 2 * odd, device=dev))
    elif case == "dtype":
        dist.all_reduce(torch.ones(10, device=dev, dtype=torch.float64 if odd else torch.float32))
    elif case == "reduce op":
        dist.all_reduce(torch.ones(10, device=dev), op=dist.ReduceOp.MAX if odd else dist.ReduceOp.SUM)
    elif case == "kind":
        if RANK == 0:
            dist.broadcast(torch.ones(10, device=dev), 0)
        else:
            dist.all_reduce(torch.ones(10, device=dev))
    elif case == "root":
        dist.broadcast(torch.ones(10, device=dev), 1 if odd else 0)
    elif case == "all_to_all splits":
        send = [1] * WORLD
        recv = [1] * WORLD
        if odd:
            recv[0] = 2
        out = torch.zeros(sum(recv), device=dev)
        dist.all_to_all_single(out, torch.ones(sum(send), device=dev), recv, send)
    report(error="none")
except Exception as e:
    report(error=type(e).__name__, message=str(e), after=time.time() - start)
try:
    dist.all_reduce(torch.ones(1, device=dev))
    report(next_error="none")
except Exception as e:
    report(next_error=type(e).__name__)
dist.destroy_process_group()
"""


@pytest.mark.parametrize("case", ["size", "large size", "dtype", "reduce op", "kind", "root", "all_to_all splits"])
def test_mismatched_collectives_raise_on_every_rank(case):
    outcomes = launch(MISMATCH, 3, env={"CASE": case}, timeout=60)
    assert_clean(outcomes)
    involved = outcomes
    if case == "all_to_all splits":
        # Only ranks 0 and 2 disagree (on what 0 sends 2); rank 1's exchange is complete and
        # correct, and it learns of the failure at its next call.
        involved = [outcomes[0], outcomes[2]]
        assert outcomes[1].result("error") in ("none", "DistBackendError")
    for o in outcomes:
        assert o.result("next_error") == "DistBackendError"
    for o in involved:
        assert o.result("error") == "DistBackendError", describe(outcomes)
        assert "mismatched" in o.result("message"), o.result("message")
        assert o.result("after") < 5, "a mismatch must be found at once, not at the timeout"
        assert o.result("next_error") == "DistBackendError"


SLOW_PEER = """
import torch_npu_sim  # noqa: F401
dist.init_process_group("npusim", timeout=timedelta(seconds=30))
t = torch.ones(8, device=torch.device("npusim", RANK))
if RANK == 1:
    time.sleep(2.0)  # a slow rank is late, not failed
    dist.all_reduce(t)
    report(sum=t.sum().item())
else:
    work = dist.all_reduce(t, async_op=True)
    try:
        work.wait(timedelta(milliseconds=300))
        report(short_wait="no error")
    except Exception as e:
        report(short_wait=type(e).__name__, short_message=str(e))
    report(completed_early=work.is_completed())
    work.wait()
    report(sum=t.sum().item(), completed=work.is_completed())
dist.destroy_process_group()
"""


def test_wait_with_timeout_and_slow_peer():
    outcomes = launch(SLOW_PEER, 2, timeout=60)
    assert_clean(outcomes)
    r0 = outcomes[0]
    assert r0.result("short_wait") == "DistBackendError"
    assert "Timed out" in r0.result("short_message")
    assert r0.result("completed_early") is False
    assert r0.result("completed") is True
    assert r0.result("sum") == 16.0 and outcomes[1].result("sum") == 16.0


ABORT = """
import torch_npu_sim  # noqa: F401
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
t = torch.ones(8, device=torch.device("npusim", RANK))
if RANK == 0:
    work = dist.all_reduce(t, async_op=True)  # rank 1 never joins
    time.sleep(0.3)
    start = time.time()
    dist.group.WORLD.abort()
    report(abort_s=time.time() - start)
    try:
        work.wait()
        report(pending="no error")
    except Exception as e:
        report(pending=type(e).__name__, message=str(e), after=time.time() - start)
    try:
        dist.all_reduce(t)
        report(next="no error")
    except Exception as e:
        report(next=type(e).__name__)
else:
    time.sleep(1.5)
"""


def test_abort_fails_pending_work_at_once():
    outcomes = launch(ABORT, 2, timeout=60)
    assert_clean(outcomes)
    r0 = outcomes[0]
    assert r0.result("abort_s") < 0.5
    assert r0.result("pending") == "DistBackendError"
    assert "aborted" in r0.result("message")
    assert r0.result("after") < 1.0
    assert r0.result("next") == "DistBackendError"


MONITORED = """
import torch_npu_sim.distributed as npd
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
if RANK == 2:
    time.sleep(3)
else:
    start = time.time()
    try:
        npd.monitored_barrier(timeout=timedelta(seconds=1))
        report(error="none")
    except Exception as e:
        report(error=type(e).__name__, message=str(e), after=time.time() - start)
"""


def test_monitored_barrier_names_the_missing_rank():
    outcomes = launch(MONITORED, 3, timeout=60)
    assert_clean(outcomes)
    # gloo's protocol: rank 0 names the missing rank; rank 1 hears of rank 0's failure
    r0, r1 = outcomes[0], outcomes[1]
    assert r0.result("error") == "RuntimeError", describe(outcomes)
    assert "Rank 2 failed to pass monitoredBarrier in 1000 ms" in r0.result("message"), r0.result("message")
    assert r1.result("error") == "RuntimeError", describe(outcomes)
    assert "Rank 1 successfully reached monitoredBarrier" in r1.result("message"), r1.result("message")
    for o in (r0, r1):
        assert o.result("after") < 3
