"""Group creation that cannot succeed must fail early, on every rank, saying why: bad
settings on one rank, settings that differ between ranks, a different world size, a
rank dying during init, /dev/shm too small. Also: listeners bind only the advertised
address, even for a group spanning hosts. Real processes under hard time limits; times
are printed (pytest -s)."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from launcher import assert_clean, describe, launch
from npusim_handshake import listening, store_port, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
EARLY_S = 3.0  # every failure below must be reported by every rank within this (timeouts: 20 s)

SETTINGS = """
import torch_npu_sim  # noqa: F401
from torch_npu_sim import _C
store = dist.TCPStore("127.0.0.1", int(os.environ["MASTER_PORT"]), WORLD, RANK == 0, timedelta(seconds=60))
groups = []
for name, envs in json.loads(os.environ["CASES"]):
    for k in ("NPUSIM_SHM_RING_BYTES", "NPUSIM_PEER_TIMEOUT"):
        os.environ.pop(k, None)
    os.environ.update(envs[RANK])
    start = time.monotonic()
    try:
        pg = _C._create_process_group(store, RANK, WORLD, 20.0, "settings")
        t = torch.ones(3)
        pg.allreduce([t]).wait()
        report(**{name: ["ok", t.tolist(), time.monotonic() - start]})
        groups.append(pg)
    except Exception as e:
        report(**{name: [type(e).__name__, str(e), time.monotonic() - start]})
# Dropping the raw backend from Python joins its worker with the GIL held, which can
# deadlock when the worker releases a tensor; the groups therefore live until _exit.
sys.stdout.flush()
os._exit(0)
"""

BAD = {  # variable: values that must be refused, naming the variable
    "NPUSIM_PEER_TIMEOUT": ["abc", "-1", "0.05", "nan", "inf", "1e9"],
    "NPUSIM_SHM_RING_BYTES": ["abc", "4100", "100", "2GiB", "-4096", "1MB", "99999999999999"],
}


def test_bad_or_mismatched_settings_fail_every_rank_at_once():
    """One rank with a bad value: it fails naming the variable, and the other fails at
    once naming that rank and the reason (not at the timeout). Ring sizes that differ
    between ranks are named on both. Valid settings then still form a group."""
    cases = [(f"{var}={v}", [{}, {var: v}]) for var, values in BAD.items() for v in values]
    cases.append(("ring mismatch", [{}, {"NPUSIM_SHM_RING_BYTES": "65536"}]))
    good = {"NPUSIM_SHM_RING_BYTES": "64KiB", "NPUSIM_PEER_TIMEOUT": "1.5"}
    cases += [("valid", [good, good]), ("peer timeout 0", [{"NPUSIM_PEER_TIMEOUT": "0"}] * 2)]
    outcomes = launch(SETTINGS, 2, env={"CASES": json.dumps(cases)}, timeout=240)
    assert_clean(outcomes)
    worst = 0.0
    for name, _ in cases:
        (kind0, msg0, t0), (kind1, msg1, t1) = (o.result(name) for o in outcomes)
        if name in ("valid", "peer timeout 0"):
            assert kind0 == kind1 == "ok" and msg0 == msg1 == [2.0] * 3, (name, msg0, msg1)
            continue
        worst = max(worst, t0, t1)
        assert max(t0, t1) < EARLY_S, (name, t0, t1)
        if name == "ring mismatch":
            for kind, msg in ((kind0, msg0), (kind1, msg1)):
                assert kind == "DistBackendError", (kind, msg)
                assert "rank 1 has NPUSIM_SHM_RING_BYTES 65536, rank 0 has 1048576" in msg, msg
            continue
        var, value = name.split("=", 1)
        assert kind1 == "RuntimeError" and var in msg1 and value in msg1, (name, msg1)
        assert kind0 == "DistBackendError" and "rank 1" in msg0 and var in msg0, (name, msg0)
    print(f"\n{len(cases) - 2} bad or mismatched settings: every rank failed within {worst:.3f} s")


# Rank 0 hosts the store (under torchrun, the agent would): it waits for the other
# surviving ranks to be done before exiting, so that they fail for their own reason.
KEEP_STORE = """
def make_store():  # held here: c10d drops the store it made itself when init fails
    return dist.TCPStore("127.0.0.1", int(os.environ["MASTER_PORT"]), None, RANK == 0, wait_for_workers=False)


def keep_store_for_others():
    d = os.environ["DIST_TEST_DIR"]
    open(os.path.join(d, f"done.{RANK}"), "w").close()
    end = time.monotonic() + 30
    while RANK == 0 and time.monotonic() < end and \\
            sum(f.startswith("done.") for f in os.listdir(d)) < int(os.environ.get("SURVIVORS", WORLD)):
        time.sleep(0.01)
"""

WORLD_MISMATCH = KEEP_STORE + """
import torch_npu_sim  # noqa: F401
world = 4 if RANK == 2 else WORLD
start = time.monotonic()
try:
    store = make_store()
    dist.init_process_group("npusim", store=store, rank=RANK, world_size=world, timeout=timedelta(seconds=20))
    report(error="none")
except Exception as e:
    report(error=str(e), error_type=type(e).__name__, after=time.monotonic() - start)
keep_store_for_others()
"""


def test_a_different_world_size_is_named_on_every_rank():
    outcomes = launch(WORLD_MISMATCH, 3, timeout=90)
    for o in outcomes:
        assert o.returncode == 0 and not o.killed, describe(outcomes)
        assert "rank 2 has world size 4, rank 0 has 3" in o.result("error"), describe(outcomes)
        assert o.result("after") < EARLY_S + 2  # + the store's own start-up
    print("\nworld size mismatch reported after " + ", ".join(f"{o.result('after'):.3f} s" for o in outcomes))


DIES = KEEP_STORE + """
import signal, threading
import torch_npu_sim  # noqa: F401
d = os.environ["DIST_TEST_DIR"]
if RANK == 2:  # joins (its record is in the store), then dies before the group is formed
    threading.Thread(target=dist.init_process_group, args=("npusim",), daemon=True,
                     kwargs=dict(store=make_store(), rank=RANK, world_size=WORLD, timeout=timedelta(seconds=20))).start()
    while not listening(os.getpid()):  # its npusim listener (the store is on rank 0)
        time.sleep(0.005)
    time.sleep(1.0)
    open(os.path.join(d, "killed_at.tmp"), "w").write(str(time.time()))
    os.rename(os.path.join(d, "killed_at.tmp"), os.path.join(d, "killed_at"))
    os.kill(os.getpid(), signal.SIGKILL)
if RANK == 1:  # arrives after rank 2 died
    while not os.path.exists(os.path.join(d, "killed_at")):
        time.sleep(0.005)
started = time.time()
try:
    store = make_store()
    dist.init_process_group("npusim", store=store, rank=RANK, world_size=WORLD, timeout=timedelta(seconds=20))
    report(error="none")
except Exception as e:
    report(error=str(e), error_type=type(e).__name__, failed_at=time.time(), started=started,
           killed_at=float(open(os.path.join(d, "killed_at")).read()))
keep_store_for_others()
"""


def test_a_rank_dying_during_init_is_noticed_early_and_named():
    code = "from npusim_handshake import listening\nimport sys\n" + DIES
    code = code.replace("from npusim_handshake", f"sys.path.insert(0, {HERE!r})\nfrom npusim_handshake", 1)
    outcomes = launch(code, 3, env={"SURVIVORS": "2"}, timeout=90)
    assert outcomes[2].returncode == -9, describe(outcomes)
    for o in outcomes[:2]:
        assert o.returncode == 0 and not o.killed, describe(outcomes)
        assert o.result("error_type") == "DistBackendError", o.result("error")
        assert "rank 2" in o.result("error") and "exited" in o.result("error"), o.result("error")
        # measured from when the group could have formed: rank 2 dead and rank 1 present
        late = o.result("failed_at") - max(o.result("killed_at"), outcomes[1].result("started"))
        print(f"\nrank {o.rank} named the dead rank 2 {late:.3f} s after the others were all there")
        assert late < EARLY_S


SMALL_SHM = KEEP_STORE + """
import torch_npu_sim  # noqa: F401
start = time.monotonic()
try:
    store = make_store()
    dist.init_process_group("npusim", store=store, rank=RANK, world_size=WORLD, timeout=timedelta(seconds=20))
    report(error="none")
except Exception as e:
    report(error=str(e), error_type=type(e).__name__, after=time.monotonic() - start)
keep_store_for_others()
"""

IN_NAMESPACE = """
import json, os, sys
sys.path.insert(0, {here!r})
from launcher import launch
out = launch({code!r}, 2, env={{"NPUSIM_TRANSPORT": "shm"}}, timeout=60)
print("OUTCOME " + json.dumps({{"ranks": [[o.returncode, o.results, o.stderr[-2000:]] for o in out],
                               "left": sorted(os.listdir("/dev/shm"))}}))
"""


def test_too_small_dev_shm_fails_at_init_with_a_clear_error():
    """A private 2 MiB /dev/shm (mount namespace) for 2 ranks x 1 MiB rings: every rank
    fails at init saying what is needed and what is free; nothing is left behind."""
    mount = "mount -t tmpfs -o size=2m tmpfs /dev/shm"
    if not shutil.which("unshare") or subprocess.run(["unshare", "-Urm", "sh", "-c", mount],
                                                     capture_output=True).returncode != 0:
        pytest.skip("cannot mount a private /dev/shm here (unshare or user namespaces unavailable)")
    inner = IN_NAMESPACE.format(here=HERE, code=SMALL_SHM)
    r = subprocess.run(["unshare", "-Urm", "sh", "-c", mount + ' && exec "$0" -c "$1"', sys.executable, inner],
                       capture_output=True, text=True, timeout=120)
    line = next((x for x in r.stdout.splitlines() if x.startswith("OUTCOME ")), None)
    assert line, r.stdout[-3000:] + r.stderr[-3000:]
    outcome = json.loads(line[8:])
    for rc, results, stderr in outcome["ranks"]:
        got = {k: v for res in results for k, v in res.items()}
        assert rc == 0, stderr
        assert "/dev/shm is too small" in got["error"] and "MiB free" in got["error"], got
        assert got["after"] < EARLY_S + 2, got
        print(f"\n{got['error_type']} after {got['after']:.3f} s: {got['error']}")
    assert not [f for f in outcome["left"] if f.startswith("npusim-")], outcome["left"]


CROSS_HOST = KEEP_STORE + """
import socket
import torch_npu_sim  # noqa: F401
if RANK == 1 and os.environ.get("ON_OTHER_HOST") != "1":  # the same machine under another host name
    os.environ["ON_OTHER_HOST"] = "1"
    os.execvp("unshare", ["unshare", "-Uru", "sh", "-c", 'hostname npusim-otherhost && exec "$0" "$1"',
                          sys.executable, sys.argv[0]])
if RANK == 1:
    while not os.path.exists(os.path.join(os.environ["DIST_TEST_DIR"], "go")):
        time.sleep(0.005)
store = make_store()
try:
    dist.init_process_group("npusim", store=store, rank=RANK, world_size=WORLD, timeout=timedelta(seconds=20))
    t = torch.ones(4, device=torch.device("npusim", RANK))
    dist.all_reduce(t)
    report(host=socket.gethostname(), sum=t.tolist(),
           transport=dist.group.WORLD._get_backend(torch.device("npusim")).transport)
    dist.destroy_process_group()
except Exception as e:
    report(host=socket.gethostname(), error=str(e))
keep_store_for_others()
"""


@pytest.mark.parametrize("addr", ["127.0.0.1", None])
def test_listeners_bind_only_the_advertised_address_across_hosts(addr):
    """Two 'hosts' (rank 1 in its own UTS namespace): the group uses TCP, and no rank
    ever listens on every interface. With NPUSIM_SOCKET_ADDR each binds exactly it;
    without, a rank binds its routable address, or says to set the variable."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-Uru", "true"], capture_output=True).returncode:
        pytest.skip("cannot give a process another host name here (unshare or user namespaces unavailable)")
    seen = set()

    def control(procs, workdir):
        skip = store_port(procs[0].pid)
        try:
            wait_for(lambda: {a for a in listening(procs[0].pid) if a[1] != skip}, 60, "rank 0 to listen")
        finally:
            open(os.path.join(workdir, "go"), "w").close()
        while any(p.poll() is None for p in procs):
            for p in procs:
                try:
                    seen.update(a for a in listening(p.pid) if a[1] != skip)
                except OSError:
                    pass
            time.sleep(0.002)

    env = {"NPUSIM_SOCKET_ADDR": addr} if addr else {}
    outcomes = launch(CROSS_HOST, 2, env=env, timeout=90, control=control)
    assert_clean(outcomes)
    assert outcomes[0].result("host") != outcomes[1].result("host")
    assert seen and not any(a == "0.0.0.0" for a, _ in seen), seen
    if addr or "error" not in outcomes[0].results[-1]:
        for o in outcomes:
            assert o.result("transport") == "tcp" and o.result("sum") == [2.0] * 4, describe(outcomes)
        if addr:
            assert {a for a, _ in seen} == {addr}, seen
    else:
        for o in outcomes:
            assert "NPUSIM_SOCKET_ADDR" in o.result("error"), describe(outcomes)
    print(f"\nNPUSIM_SOCKET_ADDR={addr}: listeners seen {sorted(seen)}")
