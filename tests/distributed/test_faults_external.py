"""Faults injected from outside: the test process SIGKILLs or SIGSTOPs a rank at a moment
the rank does not choose (in the middle of large transfers, or while the survivors wait
on it in recv or barrier), and times the survivors' errors from the instant it sent the
signal. Mismatched collectives on both transports, including mismatches of equal byte
size. /dev/shm must hold no new npusim entries afterwards."""
import os
import random
import signal
import time

import pytest

from launcher import assert_clean, describe, launch

DETECTION_BOUND_S = 1.0

FAULT = """
import torch_npu_sim  # noqa: F401
dist.init_process_group("npusim", timeout=timedelta(seconds=float(os.environ["GROUP_TIMEOUT"])))
dev = torch.device("npusim", RANK)
MODE, VICTIM = os.environ["MODE"], int(os.environ["VICTIM"])
ready = os.path.join(os.environ["DIST_TEST_DIR"], f"ready.{RANK}")
big = torch.ones(1 << 20, device=dev)  # 4 MiB: several shared-memory streams' worth
gathered = torch.empty(big.numel() * WORLD, device=dev)
small = torch.ones(16, device=dev)
i = 0
try:
    if MODE == "traffic":
        while True:
            if i == 4:
                open(ready, "w").close()
            k = i % 3
            if k == 0:
                big.fill_(1.0)
                dist.all_reduce(big)
            elif k == 1:
                dist.all_gather_into_tensor(gathered, big)
            else:
                dist.broadcast(big, src=i % WORLD)
            i += 1
    else:
        dist.all_reduce(small)  # everyone connected and healthy
        open(ready, "w").close()
        if RANK == VICTIM:
            time.sleep(120)  # killed or stopped here
        elif MODE == "recv":
            dist.recv(small, src=VICTIM)
        else:
            dist.barrier()
        report(error_type="none")
except Exception as e:
    report(error_at=time.time(), error_type=type(e).__name__, message=str(e), iteration=i)
start = time.time()
try:
    dist.all_reduce(small)
    report(next_error="none")
except Exception as e:
    report(next_error=type(e).__name__, next_after=time.time() - start, next_message=str(e))
start = time.time()
dist.destroy_process_group()
report(destroy_s=time.time() - start)
"""


def shm_entries():
    return {f for f in os.listdir("/dev/shm") if f.startswith("npusim")}


def signal_when_ready(sig, victim, record, max_delay=0.1):
    """control for launch(): once every rank is past its warm-up, wait a random moment
    (so the signal lands inside an operation), note the time and signal the victim."""
    def control(procs, workdir):
        deadline = time.monotonic() + 60
        while sum(f.startswith("ready.") for f in os.listdir(workdir)) < len(procs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                return
            time.sleep(0.005)
        time.sleep(random.uniform(0.02, max_delay))
        record["pids"] = [p.pid for p in procs]
        record["at"] = time.time()
        os.kill(procs[victim].pid, sig)
    return control


def run_fault(world, transport, mode, sig, group_timeout=30, linger=0.0, extra_env=None):
    victim = world // 2
    record = {}
    before = shm_entries()
    outcomes = launch(FAULT, world, timeout=90, linger=linger,
                      env={"NPUSIM_TRANSPORT": transport, "MODE": mode, "VICTIM": str(victim),
                           "GROUP_TIMEOUT": str(group_timeout), **(extra_env or {})},
                      control=signal_when_ready(sig, victim, record))
    assert "at" in record, "the ranks never got ready:\n" + describe(outcomes)
    # only this group's segments (named by their creator's pid): other tests may run beside it
    leftover = {f for f in shm_entries() - before if any(f"-{pid}-" in f for pid in record["pids"])}
    assert not leftover, f"shared-memory entries left behind: {sorted(leftover)}"
    return victim, record["at"], outcomes


@pytest.mark.parametrize("world,transport,mode", [
    (2, "shm", "traffic"), (2, "tcp", "traffic"), (4, "shm", "traffic"), (4, "tcp", "traffic"),
    (3, "shm", "recv"), (3, "tcp", "recv"), (3, "shm", "barrier"),
])
def test_external_sigkill(world, transport, mode):
    victim, killed_at, outcomes = run_fault(world, transport, mode, signal.SIGKILL)
    assert outcomes[victim].returncode == -signal.SIGKILL, describe(outcomes)
    for s in outcomes:
        if s.rank == victim:
            continue
        assert s.returncode == 0 and not s.killed, describe(outcomes)
        assert s.result("error_type") == "DistBackendError", describe(outcomes)
        assert f"rank {victim}" in s.result("message"), s.result("message")
        latency = s.result("error_at") - killed_at
        print(f"\n{world} ranks {transport} {mode}: rank {s.rank} raised {latency * 1000:.1f} ms after "
              f"SIGKILL of rank {victim} (iteration {s.result('iteration')})")
        assert 0 <= latency < DETECTION_BOUND_S, describe(outcomes)
        assert s.result("next_error") == "DistBackendError", describe(outcomes)
        assert f"rank {victim}" in s.result("next_message"), s.result("next_message")
        assert s.result("next_after") < DETECTION_BOUND_S
        assert s.result("destroy_s") < 2.0


@pytest.mark.parametrize("transport,mode", [("shm", "traffic"), ("tcp", "traffic"), ("shm", "recv")])
def test_external_sigstop(transport, mode):
    timeout = 3.0
    victim, stopped_at, outcomes = run_fault(3, transport, mode, signal.SIGSTOP, group_timeout=timeout, linger=1.0)
    assert outcomes[victim].killed, "the stopped rank should still be stopped at the end:\n" + describe(outcomes)
    for s in outcomes:
        if s.rank == victim:
            continue
        assert s.returncode == 0 and not s.killed, describe(outcomes)
        assert s.result("error_type") == "DistBackendError", describe(outcomes)
        message = s.result("message")
        latency = s.result("error_at") - stopped_at
        print(f"\n{transport} {mode}: rank {s.rank} raised {latency:.2f} s after SIGSTOP (timeout {timeout} s): "
              f"{message[:200]}")
        assert latency < timeout + 1.5, message
        assert f"rank {victim}" in message, message
        assert s.result("next_error") == "DistBackendError"
        assert s.result("destroy_s") < 2.0, "destroy_process_group must not wait for a stopped rank"


@pytest.mark.parametrize("transport", ["shm", "tcp"])
def test_sigstop_found_by_peer_timeout_before_group_timeout(transport):
    """NPUSIM_PEER_TIMEOUT=1: a silent rank is declared hung after ~1 s of silence even
    though the group's timeout is 30 s."""
    victim, stopped_at, outcomes = run_fault(3, transport, "traffic", signal.SIGSTOP, group_timeout=30, linger=1.0,
                                             extra_env={"NPUSIM_PEER_TIMEOUT": "1"})
    for s in outcomes:
        if s.rank == victim:
            continue
        assert s.returncode == 0 and not s.killed, describe(outcomes)
        assert s.result("error_type") == "DistBackendError", describe(outcomes)
        latency = s.result("error_at") - stopped_at
        print(f"\n{transport}: rank {s.rank} raised {latency:.2f} s after SIGSTOP (peer timeout 1 s, group 30 s): "
              f"{s.result('message')[:200]}")
        assert latency < 1.0 + 1.5, s.result("message")
        assert f"rank {victim}" in s.result("message"), s.result("message")
        assert s.result("destroy_s") < 2.0


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
    elif case == "dtype":
        dist.all_reduce(torch.ones(10, device=dev, dtype=torch.float64 if odd else torch.float32))
    elif case == "dtype of equal size":
        dist.all_reduce(torch.ones(10, device=dev, dtype=torch.int32 if odd else torch.float32))
    elif case == "reduce op":
        dist.all_reduce(torch.ones(10, device=dev), op=dist.ReduceOp.MAX if odd else dist.ReduceOp.SUM)
    elif case == "kind":
        if odd:
            dist.broadcast(torch.ones(10, device=dev), 0)
        else:
            dist.all_reduce(torch.ones(10, device=dev))
    elif case == "all_gather vs reduce_scatter of equal sizes":
        if odd:
            dist.reduce_scatter_tensor(torch.zeros(3, device=dev), torch.ones(3 * WORLD, device=dev))
        else:
            dist.all_gather_into_tensor(torch.zeros(3 * WORLD, device=dev), torch.ones(3, device=dev))
    elif case == "all_gather_into_tensor input size":
        n = 4 + odd
        dist.all_gather_into_tensor(torch.zeros(n * WORLD, device=dev), torch.ones(n, device=dev))
    elif case == "one rank calls one more all_reduce":
        dist.all_reduce(torch.ones(10, device=dev))
        if odd:
            dist.all_reduce(torch.ones(10, device=dev))
        dist.barrier()
    elif case == "recv buffer larger than the send":
        if RANK == 0:
            dist.send(torch.ones(10, device=dev), WORLD - 1)
        elif odd:
            dist.recv(torch.zeros(12, device=dev), 0)
    report(error="none")
except Exception as e:
    report(error=type(e).__name__, message=str(e), after=time.time() - start)
    if odd and os.environ.get("EXIT_AT_ONCE"):
        os._exit(0)  # no goodbye: the others must still learn the first cause
try:
    dist.all_reduce(torch.ones(1, device=dev))
    report(next_error="none")
except Exception as e:
    report(next_error=type(e).__name__)
dist.destroy_process_group()
"""

MISMATCH_CASES = ["size", "dtype", "dtype of equal size", "reduce op", "kind",
                  "all_gather vs reduce_scatter of equal sizes", "all_gather_into_tensor input size",
                  "one rank calls one more all_reduce", "recv buffer larger than the send"]


@pytest.mark.parametrize("transport", ["shm", "tcp"])
@pytest.mark.parametrize("case", MISMATCH_CASES)
def test_mismatch(case, transport):
    outcomes = launch(MISMATCH, 3, env={"CASE": case, "NPUSIM_TRANSPORT": transport}, timeout=60)
    assert_clean(outcomes)
    involved = outcomes
    if case == "recv buffer larger than the send":
        # only the receiver must find it at once; the sender's send may have completed
        involved = [outcomes[2]]
        assert outcomes[0].result("error") in ("none", "DistBackendError"), describe(outcomes)
    for o in involved:
        assert o.result("error") == "DistBackendError", describe(outcomes)
        assert "mismatch" in o.result("message"), o.result("message")
        assert o.result("after") < 5, "a mismatch must be found at once, not at the timeout"
    for o in outcomes:
        assert o.result("next_error") == "DistBackendError", describe(outcomes)


@pytest.mark.parametrize("transport", ["shm", "tcp"])
@pytest.mark.parametrize("case", ["size", "dtype of equal size", "kind"])
def test_mismatch_is_the_cause_even_when_the_odd_rank_exits_at_once(case, transport):
    """The odd rank finds the mismatch, announces it and exits on the spot: the others
    report the mismatch, not the broken connection, whatever the scheduling."""
    outcomes = launch(MISMATCH, 3, env={"CASE": case, "NPUSIM_TRANSPORT": transport, "EXIT_AT_ONCE": "1"},
                      timeout=60)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("error") == "DistBackendError", describe(outcomes)
        assert "mismatch" in o.result("message"), o.result("message")
