"""Two simulated hosts as Linux network namespaces joined by a veth pair
(scripts/netns_hosts.sh): torchrun --nnodes 2 --nproc-per-node 2 across them gives each
rank shared memory towards its own host and TCP towards the other, with results equal to
a one-host run; cutting the link mid-collective fails every rank with a named error (no
rank hangs), and once it is restored a new group forms. Needs root and network
namespaces; skipped, saying why, where the machine forbids them."""
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "scripts", "netns_hosts.sh")
WORKER = os.path.join(HERE, "netns_workers.py")
SUBNET = "10.231.0"
HOST0 = f"{SUBNET}.1"


def namespaces_forbidden():
    if os.geteuid() != 0:
        return "network namespaces need root, and this test runs as an ordinary user"
    name = "npq" + uuid.uuid4().hex[:8]
    made = subprocess.run(["bash", SCRIPT, "create", name, SUBNET], capture_output=True, text=True)
    subprocess.run(["bash", SCRIPT, "destroy", name], capture_output=True)
    if made.returncode != 0:
        return f"this machine forbids creating network namespaces and veth pairs: {made.stderr.strip()}"
    return None


_FORBIDDEN = namespaces_forbidden() if sys.platform == "linux" else "network namespaces are Linux only"
pytestmark = pytest.mark.skipif(_FORBIDDEN is not None, reason=str(_FORBIDDEN))


@pytest.fixture
def hosts():
    """A fresh pair of hosts, with a name of its own; removed even if the test fails."""
    name = "npt" + uuid.uuid4().hex[:8]
    subprocess.run(["bash", SCRIPT, "create", name, SUBNET], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["bash", SCRIPT, "destroy", name], capture_output=True)
        assert not subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count(name)


class Ranks:
    """Processes started in their own sessions; every one is killed (whole group) at the
    end or when the wall-clock limit passes, so nothing outlives the test."""

    def __init__(self, workdir):
        self.workdir, self.procs = workdir, []

    def start(self, argv, env=None, label=""):
        full = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
        out = open(os.path.join(self.workdir, f"log.{label or len(self.procs)}"), "w")
        self.procs.append(subprocess.Popen(argv, env=full, stdout=out, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def wait(self, deadline):
        while any(p.poll() is None for p in self.procs):
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail("ranks still running at the wall-clock limit (hung):\n" + self.logs())
            time.sleep(0.05)
        return [p.returncode for p in self.procs]

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    try:
                        os.killpg(p.pid, sig)
                    except ProcessLookupError:
                        pass
        for p in self.procs:
            p.wait()

    def logs(self):
        text = ""
        for path in sorted(glob.glob(os.path.join(self.workdir, "log.*"))):
            with open(path) as f:
                text += f"--- {os.path.basename(path)}\n{f.read()[-3000:]}\n"
        return text


def until(cond, deadline, what, ranks):
    while not cond():
        if time.monotonic() > deadline:
            ranks.kill()
            pytest.fail(f"timed out waiting for {what}:\n" + ranks.logs())
        time.sleep(0.05)


def torchrun(args, node_args=()):
    return [sys.executable, "-m", "torch.distributed.run", *node_args, "--max-restarts", "0", *args]


def run_collectives(workdir, launches, limit):
    ranks = Ranks(workdir)
    try:
        for argv, label in launches:
            ranks.start(argv, label=label)
        codes = ranks.wait(time.monotonic() + limit)
        assert codes == [0] * len(codes), ranks.logs()
    finally:
        ranks.kill()
    infos = {}
    for path in glob.glob(os.path.join(workdir, "info.*.json")):
        with open(path) as f:
            info = json.load(f)
        infos[info["rank"]] = info
    tensors = {r: torch.load(os.path.join(workdir, f"tensors.{r}.pt")) for r in infos}
    return infos, tensors


def test_torchrun_two_nodes_mix_shm_and_tcp_with_one_host_results(hosts):
    with tempfile.TemporaryDirectory() as two, tempfile.TemporaryDirectory() as one:
        launches = []
        for node in (0, 1):
            node_args = ["--nnodes", "2", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
                         "--rdzv-endpoint", f"{HOST0}:29400", "--rdzv-id", hosts,
                         "--local-addr", f"{SUBNET}.{node + 1}",
                         # the namespaces share the machine's host name: say which one serves the store
                         "--rdzv-conf", f"is_host={'true' if node == 0 else 'false'}"]
            launches.append((["bash", SCRIPT, "exec", hosts, str(node),
                              *torchrun([WORKER, two, "collectives"], node_args)], f"node{node}"))
        infos, tensors = run_collectives(two, launches, 240)
        assert sorted(infos) == [0, 1, 2, 3], infos
        by_ns = {}
        for r, info in infos.items():
            by_ns.setdefault(info["netns"], []).append(r)
        assert sorted(len(v) for v in by_ns.values()) == [2, 2], by_ns  # two hosts of two ranks
        for r, info in infos.items():
            want = ["self" if p == r else "shm" if infos[p]["netns"] == info["netns"] else "tcp" for p in range(4)]
            assert info["peers"] == want, (r, info)
            assert info["transport"] == "mixed"

        # The same program on one host: every pair over shared memory, the same numbers.
        infos1, tensors1 = run_collectives(one, [(torchrun([WORKER, one, "collectives"],
                                                           ["--standalone", "--nproc-per-node", "4"]), "one")], 240)
        for r in range(4):
            assert set(infos1[r]["peers"]) == {"self", "shm"}, infos1[r]
            assert tensors[r].keys() == tensors1[r].keys()
            for key in tensors[r]:
                assert torch.equal(tensors[r][key], tensors1[r][key]), (r, key)
        print(f"\n2 hosts x 2 ranks: {len(tensors[0])} collective results per rank equal to one host's; "
              f"peers of rank 0: {infos[0]['peers']}")


def test_partition_fails_every_rank_by_name_and_a_new_group_forms_after(hosts):
    with tempfile.TemporaryDirectory() as workdir:
        ranks = Ranks(workdir)
        files = lambda prefix: glob.glob(os.path.join(workdir, prefix + ".*"))  # noqa: E731
        try:
            for rank in range(4):
                node = rank // 2
                env = {"RANK": str(rank), "WORLD_SIZE": "4", "STORE_ADDR": HOST0, "STORE_PORT": "29500",
                       "MASTER_ADDR": HOST0, "NPUSIM_PEER_TIMEOUT": "3", "GROUP_TIMEOUT": "20"}
                ranks.start(["bash", SCRIPT, "exec", hosts, str(node), sys.executable, WORKER, workdir, "partition"],
                            env=env, label=f"rank{rank}")
            until(lambda: len(files("running")) == 4, time.monotonic() + 120, "all ranks to run collectives", ranks)
            subprocess.run(["bash", SCRIPT, "link", hosts, "down"], check=True)
            until(lambda: len(files("failed")) == 4, time.monotonic() + 90, "every rank to fail", ranks)
            subprocess.run(["bash", SCRIPT, "link", hosts, "up"], check=True)
            open(os.path.join(workdir, "restored"), "w").close()
            codes = ranks.wait(time.monotonic() + 150)
            assert codes == [0] * 4, ranks.logs()
        finally:
            ranks.kill()
        results = {}
        for rank in range(4):
            with open(os.path.join(workdir, f"result.{rank}.json")) as f:
                merged = {}
                for line in f:
                    merged.update(json.loads(line))
                results[rank] = merged
        for rank, got in results.items():
            other_host = {0, 1, 2, 3} - ({0, 1} if rank < 2 else {2, 3})
            assert got["before"]["transport"] == "mixed", got
            assert got["error_type"] == "DistBackendError", got
            # The error names the ranks it lost: across the cut, or (told by a host
            # mate that detected it first) the same ones.
            assert got["failed_ranks"] and set(got["failed_ranks"]) <= other_host | {rank ^ 1}, got
            assert any(f"rank {r}" in got["error"] or f"ranks {r}" in got["error"] for r in got["failed_ranks"]), got
            assert got["sum"] == 10.0 and got["after"]["transport"] == "mixed", got
            print(f"\nrank {rank} after {got['calls']} all_reduces: {got['error_type']}: {got['error'][:200]}")
