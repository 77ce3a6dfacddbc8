"""Injected faults (torch_npu_sim.distributed.faults, NPUSIM_FAULTS) and payload checksums
(NPUSIM_CHECKSUM) on real rank processes, both transports. Every launch runs under a hard
limit; the assertions are about which call fails, on which rank, and with what error."""
import json

import pytest

from launcher import assert_clean, describe, launch

TRANSPORTS = ["shm", "tcp"]

# Each rank runs CALLS operations, cycling through OPS, then a barrier (so that a rank
# whose own calls all completed still learns of a failure), and reports each outcome.
# RULES (JSON list of faults.inject keyword sets) are added through the Python API after
# init; NPUSIM_FAULTS through the environment.
LOOP = """
import torch_npu_sim  # noqa: F401
from torch_npu_sim.distributed import faults
try:
    dist.init_process_group("npusim", timeout=timedelta(seconds=float(os.environ.get("PG_TIMEOUT", "20"))))
except Exception as e:
    report(init_error=type(e).__name__, message=str(e))
    # rank 0 hosts the store: it stays until every rank has met its own error, so a slow
    # rank reads the bad setting rather than a closed store
    open(os.path.join(os.environ["DIST_TEST_DIR"], f"init_failed{RANK}"), "w").close()
    deadline = time.time() + 60
    while RANK == 0 and time.time() < deadline and not all(
            os.path.exists(os.path.join(os.environ["DIST_TEST_DIR"], f"init_failed{r}")) for r in range(WORLD)):
        time.sleep(0.05)
    sys.exit(0)
for rule in json.loads(os.environ.get("RULES", "[]")):
    faults.inject(**rule)
dev = torch.device("npusim", RANK)
ops = os.environ.get("OPS", "all_reduce").split(",")
numel = int(os.environ.get("NUMEL", "1000"))
per_step = int(os.environ.get("PER_STEP", "0"))
oks, took = [], []
calls = int(os.environ.get("CALLS", "6"))
for i in range(calls + 1):
    if per_step:
        faults.set_step(i // per_step)
    op = "barrier" if i == calls else ops[i % len(ops)]
    t = torch.full((numel,), float(RANK + 1), device=dev)
    start = time.time()
    try:
        if op == "all_reduce":
            dist.all_reduce(t)
            expected = torch.full_like(t, WORLD * (WORLD + 1) / 2)
        elif op == "broadcast":
            dist.broadcast(t, 0)
            expected = torch.ones_like(t)
        elif op == "barrier":
            dist.barrier()
            break
        elif op == "send":  # rank 0 -> rank 1
            expected = torch.ones_like(t)
            if RANK == 0:
                dist.send(t, 1)
            elif RANK == 1:
                dist.recv(t, 0)
        ok = bool(torch.equal(t.cpu(), expected.cpu()))
    except Exception as e:
        report(error_type=type(e).__name__, message=str(e), failed_call=i + 1, after=time.time() - start)
        break
    oks.append(ok)
    took.append(time.time() - start)
report(oks=oks, took=took, rules=faults.rules())
"""


def run(world, transport="shm", faults_env=None, rules=None, timeout=60, linger=0.0, **env):
    full = {"NPUSIM_TRANSPORT": transport, **{k: str(v) for k, v in env.items()}}
    if faults_env is not None:
        full.update(NPUSIM_FAULTS=faults_env, NPUSIM_ALLOW_FAULTS="1")
    if rules is not None:
        full["RULES"] = json.dumps(rules)
    return launch(LOOP, world, env=full, timeout=timeout, linger=linger)


def errors(outcomes, ranks):
    out = {}
    for r in ranks:
        o = outcomes[r]
        assert o.returncode == 0 and not o.killed, describe(outcomes)
        assert o.result("error_type") == "DistBackendError", describe(outcomes)
        out[r] = o
    return out


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kill_at_a_given_call_names_the_rank(transport):
    outcomes = run(3, transport, faults_env="rank=1,op=all_reduce,call=3,action=kill")
    assert outcomes[1].returncode == -9, describe(outcomes)
    assert "injected fault on rank 1: kill at its message of all_reduce #2" in outcomes[1].stderr
    for o in errors(outcomes, [0, 2]).values():
        assert o.result("failed_call") == 3
        assert "rank 1" in o.result("message"), o.result("message")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stop_is_named_within_the_timeout(transport):
    outcomes = run(3, transport, faults_env="rank=1,op=any,call=2,action=stop", PG_TIMEOUT=3, linger=1.0)
    assert outcomes[1].killed, "the stopped rank should still be stopped at the end"
    for o in errors(outcomes, [0, 2]).values():
        message = o.result("message")
        assert o.result("failed_call") == 2
        assert "rank 1" in message and "Timed out" in message, message
        assert o.result("after") < 3.0 + 1.5


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_delay_keeps_the_result_and_takes_at_least_the_delay(transport):
    outcomes = run(2, transport, rules=[{"action": "delay:300", "rank": 0, "op": "broadcast", "call": 2}],
                   OPS="all_reduce,broadcast", CALLS=6)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("oks") == [True] * 6
        took = o.result("took")
        assert took[3] >= 0.3, took  # the 2nd broadcast is call 4
        assert max(took[1:3] + took[4:]) < 0.3, took


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_dropped_collective_message_is_a_named_error(transport):
    outcomes = run(2, transport, faults_env="rank=1,op=all_reduce,call=2,action=drop", PG_TIMEOUT=3)
    assert "injected fault on rank 1: drop" in outcomes[1].stderr
    for o in errors(outcomes, [0, 1]).values():
        message = o.result("message")
        assert "rank 1" in message and ("Timed out" in message or "was lost" in message), message
        assert o.result("after") < 3.0 + 1.5
    assert outcomes[0].result("failed_call") == 2  # rank 0 never got rank 1's part


def test_dropped_send_times_out_at_the_receiver():
    # p2p messages carry no sequence number: a later send would take the dropped one's place
    outcomes = run(2, "tcp", faults_env="rank=0,op=send,call=2,action=drop", OPS="send", CALLS=2, PG_TIMEOUT=2)
    o = errors(outcomes, [1])[1]
    assert o.result("failed_call") == 2
    message = o.result("message")
    assert "Timed out after 2000 ms" in message and "rank 0" in message, message


CORRUPT_CASES = [  # (transport, ops, numel): small messages, and large ones combined as they arrive
    # (a large shm collective with checksums streams, so the corruption hits its payload)
    ("shm", "all_reduce", 1000),
    ("tcp", "all_reduce", 1000),
    ("shm", "all_reduce", 300000),
    ("tcp", "all_reduce", 300000),
    ("shm", "broadcast", 1000),
]


@pytest.mark.parametrize("transport,ops,numel", CORRUPT_CASES)
def test_corruption_with_checksums_fails_every_rank_named(transport, ops, numel):
    victim = 0 if ops == "broadcast" else 2
    outcomes = run(3, transport, faults_env=f"rank={victim},op={ops},call=2,action=corrupt", OPS=ops, NUMEL=numel,
                   NPUSIM_CHECKSUM=1)
    receiver = 1 if ops == "broadcast" else 0  # the victim's first message goes to its lowest peer
    for r, o in errors(outcomes, [0, 1, 2]).items():
        message = o.result("message")
        # the others learn of it in the same call or, if theirs had completed, the next
        assert o.result("failed_call") == 2 if r == receiver else o.result("failed_call") in (2, 3)
        assert "checksum mismatch" in message and f"rank {victim} sent" in message and f"{ops} #1" in message, message


def test_corrupted_send_with_checksums_fails_both_ranks():
    outcomes = run(2, "shm", rules=[{"action": "corrupt", "rank": 0, "op": "send", "call": 3}], OPS="send",
                   NPUSIM_CHECKSUM=1)
    for o in errors(outcomes, [0, 1]).values():
        assert "checksum mismatch" in o.result("message") and "send/recv" in o.result("message")
    assert outcomes[1].result("failed_call") == 3


# shm 300000: large enough to read peers' memory in place, but a rank about to corrupt its
# payload makes the group stream that collective, so the corruption lands in the data
@pytest.mark.parametrize("transport,numel", [("shm", 1000), ("tcp", 300000), ("shm", 300000)])
def test_corruption_without_checksums_is_wrong_data(transport, numel):
    outcomes = run(2, transport, faults_env="rank=1,op=all_reduce,call=2,action=corrupt", NUMEL=numel)
    assert_clean(outcomes)
    oks = [o.result("oks") for o in outcomes]
    assert oks[0] == [True, False, True, True, True, True], oks  # documented: undetected
    # the sender's tensor is untouched, but a large all_reduce gathers the bad sum back to it
    assert oks[1] == ([True] * 6 if numel == 1000 else oks[0]), oks


@pytest.mark.parametrize("env,part", [
    ({"NPUSIM_FAULTS": "rank=1,op=all_reduce,call=3,action=kill;rank=2,op=nope,action=drop",
      "NPUSIM_ALLOW_FAULTS": "1"}, 'rule 2 "rank=2,op=nope'),
    ({"NPUSIM_FAULTS": "rank=1,call=0,action=kill", "NPUSIM_ALLOW_FAULTS": "1"}, 'call="0"'),
    ({"NPUSIM_CHECKSUM": "yes"}, "NPUSIM_CHECKSUM"),
])
def test_bad_settings_are_a_value_error_naming_the_part(env, part):
    outcomes = launch(LOOP, 2, env=env, timeout=60)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("init_error") == "ValueError", describe(outcomes)
        assert part in o.result("message"), o.result("message")


def test_environment_rules_need_a_second_opt_in():
    # a stray NPUSIM_FAULTS alone does nothing but warn: rank 1 is not killed
    outcomes = launch(LOOP, 2, env={"NPUSIM_FAULTS": "rank=1,op=all_reduce,call=2,action=kill"}, timeout=60)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.returncode == 0 and o.result("oks") == [True] * 6 and o.result("rules") == [], describe(outcomes)
        assert "NPUSIM_ALLOW_FAULTS=1" in o.stderr, o.stderr


def test_python_api_validation_and_rules():
    code = """
import torch_npu_sim  # noqa: F401
from torch_npu_sim.distributed import faults
errors = []
for bad in [dict(action="explode"), dict(action="kill", op="all_reduce,action=drop"), dict(action="kill", call=0),
            dict(action="delay:-5"), dict(action="kill", rank="1")]:
    try:
        faults.inject(**bad)
        errors.append(None)
    except ValueError as e:
        errors.append(str(e))
first = faults.inject("kill", rank=1, op="all_reduce", call=3)
with faults.injected("delay:10", op="broadcast", step=2) as second:
    inside = [r["spec"] for r in faults.rules()]
faults.set_step(4)
report(errors=errors, inside=inside, after=faults.rules(), step=faults.get_step(), ids=[first, second])
faults.clear()
report(cleared=faults.rules())
"""
    (o,) = launch(code, 1, env={"NPUSIM_FAULTS": "rank=0,action=drop", "NPUSIM_ALLOW_FAULTS": "1"}, timeout=60)
    assert_clean([o])
    assert all(o.result("errors")), o.result("errors")
    assert "explode" in o.result("errors")[0]
    assert o.result("inside") == ["rank=0,action=drop", "rank=1,op=all_reduce,call=3,action=kill",
                                  "rank=any,op=broadcast,step=2,action=delay:10"]
    assert [r["spec"] for r in o.result("after")] == o.result("inside")[:2]
    assert o.result("step") == 4 and o.result("cleared") == []


def test_step_rule_from_the_python_api():
    # two operations per step: step 3 begins at call 7
    outcomes = run(3, "shm", rules=[{"action": "kill", "rank": 2, "step": 3}], PER_STEP=2, CALLS=10)
    assert outcomes[2].returncode == -9, describe(outcomes)
    for o in errors(outcomes, [0, 1]).values():
        assert o.result("failed_call") == 7 and "rank 2" in o.result("message")


def test_same_spec_fails_the_same_call_every_run():
    spec = "rank=1,op=any,call=5,action=corrupt"
    runs = [run(3, "shm", faults_env=spec, OPS="all_reduce,broadcast", NPUSIM_CHECKSUM=1, CALLS=8) for _ in range(2)]
    seen = [[(o.result("failed_call"), o.result("message")) for o in errors(r, [0, 1, 2]).values()] for r in runs]
    assert [m for _, m in seen[0]] == [m for _, m in seen[1]], seen
    assert seen[0][0][0] == seen[1][0][0] == 5 and "rank 1 sent to rank 0 in all_reduce #4" in seen[0][0][1], seen
