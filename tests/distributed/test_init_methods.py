"""More ways to reach an npusim group: init_method URLs (file://, tcp://) with explicit
rank/world_size/timeout, subgroups with an explicit backend, new_subgroups, and the
backend name as torch reports it."""
import os
import tempfile

import pytest

from launcher import assert_clean, describe, launch

INIT = """
import torch_npu_sim  # noqa: F401
variant = os.environ["VARIANT"]
dev = torch.device("npusim", RANK)
kw = dict(rank=RANK, world_size=WORLD, timeout=timedelta(seconds=30))
if variant == "file":
    dist.init_process_group("npusim", init_method="file://" + os.environ["INIT_FILE"], **kw)
elif variant == "tcp":
    dist.init_process_group("npusim", init_method=f"tcp://127.0.0.1:{os.environ['MASTER_PORT']}", **kw)
else:
    dist.init_process_group("npusim", **kw)
report(backend=str(dist.get_backend()), rank=dist.get_rank(), world=dist.get_world_size())
t = torch.full((4,), float(RANK + 1), device=dev)
dist.all_reduce(t)
report(world_sum=t.tolist())
if variant == "subgroups":
    everyone = list(range(WORLD))
    g_npusim = dist.new_group(everyone, backend="npusim")
    g_gloo = dist.new_group(everyone, backend="gloo")
    a = torch.full((3,), float(RANK), device=dev)
    dist.all_reduce(a, group=g_npusim)
    c = torch.full((3,), float(RANK))
    dist.all_reduce(c, group=g_gloo)
    report(npusim_group=a.tolist(), gloo_group=c.tolist(),
           group_backends=[str(dist.get_backend(g_npusim)), str(dist.get_backend(g_gloo))])
    # one subgroup per pair of ranks
    mine, _ = dist.new_subgroups(group_size=2)
    b = torch.full((2,), float(RANK), device=dev)
    dist.all_reduce(b, group=mine)
    report(pair=b.tolist(), pair_rank=dist.get_rank(mine))
dist.destroy_process_group()
report(destroyed=not dist.is_initialized())
"""


@pytest.mark.parametrize("variant,world", [("file", 2), ("tcp", 2), ("subgroups", 4)])
def test_init_method_and_subgroups(variant, world):
    with tempfile.TemporaryDirectory() as d:
        outcomes = launch(INIT, world, env={"VARIANT": variant, "INIT_FILE": os.path.join(d, "rendezvous")},
                          timeout=120)
    assert_clean(outcomes)
    total = float(sum(range(1, world + 1)))
    for o in outcomes:
        assert o.result("backend") == "npusim"
        assert (o.result("rank"), o.result("world")) == (o.rank, world)
        assert o.result("world_sum") == [total] * 4, describe(outcomes)
        assert o.result("destroyed") is True
        if variant == "subgroups":
            assert o.result("npusim_group") == [float(sum(range(world)))] * 3
            assert o.result("gloo_group") == [float(sum(range(world)))] * 3
            assert o.result("group_backends") == ["npusim", "gloo"], describe(outcomes)
            first = o.rank - o.rank % 2
            assert o.result("pair") == [float(first + first + 1)] * 2
            assert o.result("pair_rank") == o.rank % 2


def test_backend_name(fresh_python):
    r = fresh_python("""
        import torch, torch.distributed as dist
        import torch_npu_sim  # noqa: F401
        print(dist.Backend("npusim"), dist.Backend("NPUSIM"), dist.Backend.NPUSIM if hasattr(dist.Backend, "NPUSIM") else "-")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["npusim", "npusim"]


TORCHRUN = """
import json, os
import torch
import torch.distributed as dist
import torch_npu_sim  # noqa: F401
dist.init_process_group("npusim")
rank, local = dist.get_rank(), int(os.environ["LOCAL_RANK"])
t = torch.full((5,), float(rank + 1), device=torch.device("npusim", local))
dist.all_reduce(t)
with open(os.path.join(os.environ["RESULT_DIR"], f"rank{rank}.json"), "w") as f:  # (a shared pipe interleaves)
    json.dump({"rank": rank, "world": dist.get_world_size(), "sum": t.tolist(),
               "restarts": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "-1"))}, f)
dist.destroy_process_group()
"""


def test_under_torchrun(tmp_path):
    """torchrun's own rendezvous (its store, its environment) works unchanged."""
    import json
    import signal
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(TORCHRUN)
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3",
                             "--max-restarts", "0", str(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "RESULT_DIR": str(tmp_path)})
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError("torchrun hung:\n" + err[-3000:])
    assert proc.returncode == 0, err[-3000:]
    results = sorted((json.loads(f.read_text()) for f in tmp_path.glob("rank*.json")), key=lambda r: r["rank"])
    assert [r["rank"] for r in results] == [0, 1, 2], out + err[-3000:]
    for r in results:
        assert r["world"] == 3 and r["sum"] == [6.0] * 5 and r["restarts"] == 0


CHOICE = """
import torch_npu_sim  # noqa: F401
os.environ["NPUSIM_TRANSPORT"] = os.environ["RANK0_TRANSPORT"] if RANK == 0 else os.environ["OTHERS_TRANSPORT"]
dist.init_process_group("npusim")
t = torch.ones(100_000, device=torch.device("npusim", RANK))
dist.all_reduce(t)
report(transport=dist.group.WORLD._get_backend(torch.device("npusim")).transport, ok=bool((t == WORLD).all()))
dist.destroy_process_group()
"""


@pytest.mark.parametrize("rank0,others", [("tcp", "shm"), ("shm", "tcp")])
def test_rank0_chooses_the_transport(rank0, others):
    outcomes = launch(CHOICE, 3, env={"RANK0_TRANSPORT": rank0, "OTHERS_TRANSPORT": others}, timeout=60)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("transport") == rank0, describe(outcomes)
        assert o.result("ok") is True


def listening_ports(pid):
    """TCP ports on which process `pid` listens (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


LISTEN = """
import torch_npu_sim  # noqa: F401
dist.init_process_group("npusim", timeout=timedelta(seconds=30))
t = torch.ones(4, device=torch.device("npusim", RANK))
dist.all_reduce(t)
open(os.path.join(os.environ["DIST_TEST_DIR"], f"ready.{RANK}"), "w").close()
while not os.path.exists(os.path.join(os.environ["DIST_TEST_DIR"], "looked")):
    time.sleep(0.01)
dist.all_reduce(t)
report(sum=t.tolist())
dist.destroy_process_group()
"""


@pytest.mark.parametrize("transport", ["shm", "tcp"])
def test_nothing_listens_once_the_group_is_up(transport):
    """Peers connect during set-up only: afterwards no rank accepts connections (only the
    rendezvous store, torch's own, still listens), so strangers have nothing to talk to."""
    import time

    seen = {}

    def control(procs, workdir):
        deadline = time.monotonic() + 60
        while sum(f.startswith("ready.") for f in os.listdir(workdir)) < len(procs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                return
            time.sleep(0.01)
        environ = open(f"/proc/{procs[0].pid}/environ", "rb").read().split(b"\0")
        store_port = int(next(e for e in environ if e.startswith(b"MASTER_PORT="))[12:])
        seen["ports"] = {p.pid: sorted(listening_ports(p.pid) - {store_port}) for p in procs}
        open(os.path.join(workdir, "looked"), "w").close()

    outcomes = launch(LISTEN, 3, env={"NPUSIM_TRANSPORT": transport}, timeout=60, control=control)
    assert_clean(outcomes)
    assert "ports" in seen, describe(outcomes)
    assert all(not ports for ports in seen["ports"].values()), seen["ports"]
    for o in outcomes:
        assert o.result("sum") == [9.0] * 4
