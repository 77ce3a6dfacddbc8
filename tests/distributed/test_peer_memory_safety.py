"""What reading peers' memory in place must never do: read past a peer's allocation,
open another process's memory, lose a concurrent write, succeed on a buffer its owner has
already taken back, or let a forked child see its parent's later writes. Each case is
ordinary user code that once gave wrong results with no error; every result is checked
exactly (integer-valued data)."""
import shutil
import subprocess

import pytest

from launcher import assert_clean, describe, launch

MiB = 1 << 20


def check_all(outcomes):
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("failures") == [], (o.rank, o.result("failures"))


# List-form reduce_scatter whose inputs are separate tensors, allocated in a loop: from the
# second iteration on the cache hands out blocks that sit side by side in memory.
ADJACENT_INPUTS = r'''
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
dev = torch.device("npusim", RANK)
failures = []
n = MIB // 4
for it in range(4):
    ins = [torch.full((n,), float(RANK * 10 + p + it), device=dev) for p in range(WORLD)]
    out = torch.empty(n, device=dev)
    dist.reduce_scatter(out, ins)
    want = float(sum(r * 10 + RANK + it for r in range(WORLD)))
    if not torch.equal(out.cpu(), torch.full((n,), want)):
        failures.append(f"iteration {it}: got {out.cpu().unique().tolist()[:4]}, want {want}")
    del ins, out
report(failures=failures)
dist.destroy_process_group()
'''.replace("MIB", str(MiB))


def test_reduce_scatter_of_adjacent_separate_inputs():
    check_all(launch(ADJACENT_INPUTS, 2, timeout=120))


# int64 inputs that are strided views (every other element of a buffer twice as long).
STRIDED_INPUTS = r'''
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
dev = torch.device("npusim", RANK)
failures = []
n = 2 * MIB // 8 * 8  # 2 Mi int64 elements per input
def value(rank, p, it):
    return (torch.arange(n, dtype=torch.int64) * (p + 1) + rank * 7 + it) % 1000
for it in range(2):
    bases = [torch.zeros(2 * n, dtype=torch.int64, device=dev) for p in range(WORLD)]
    ins = [b[::2] for b in bases]
    for p, view in enumerate(ins):
        view.copy_(value(RANK, p, it))
    out = torch.empty(n, dtype=torch.int64, device=dev)
    dist.reduce_scatter(out, ins)
    want = sum(value(r, RANK, it) for r in range(WORLD))
    if not torch.equal(out.cpu(), want):
        failures.append(f"run {it}: {(out.cpu() != want).sum().item()} of {n} elements wrong")
report(failures=failures)
dist.destroy_process_group()
'''.replace("MIB", str(MiB))


def test_reduce_scatter_of_strided_views():
    check_all(launch(STRIDED_INPUTS, 3, timeout=240))


# A collective on one bucket of a flat buffer while this thread writes the other buckets
# (overlapped gradient reduction): every write survives, and the bucket holds the sum.
CONCURRENT_WRITES = r'''
from torch_npu_sim.distributed import backend_of
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
dev = torch.device("npusim", RANK)
failures = []
for trial in range(6):
    bucket_numel = MIB // 2 + trial * 1024  # a new block each trial: first use in a collective
    flat = torch.zeros(bucket_numel + 65536, device=dev)
    bucket, rest = flat[:bucket_numel], flat[bucket_numel:]
    bucket.fill_(RANK + 1)
    work = dist.all_reduce(bucket, async_op=True)
    for i in range(rest.numel() // 64):
        rest[i * 64:(i + 1) * 64] = float(i % 1000 + 1)
    work.wait()
    want_rest = (torch.arange(rest.numel()) // 64 % 1000 + 1).float()
    lost = (rest.cpu() != want_rest).sum().item()
    if lost:
        failures.append(f"trial {trial}: {lost} concurrent writes lost")
    if not torch.equal(bucket.cpu(), torch.full((bucket_numel,), float(WORLD * (WORLD + 1) // 2))):
        failures.append(f"trial {trial}: wrong sum")
report(failures=failures, peer_access=backend_of(dist.group.WORLD).peer_access, sharing=torch.npusim.sharing_stats())
dist.destroy_process_group()
'''.replace("MIB", str(MiB))


def test_concurrent_writes_to_other_views_survive_a_collective():
    outcomes = launch(CONCURRENT_WRITES, 2, timeout=180)
    check_all(outcomes)
    assert {o.result("peer_access") for o in outcomes} == {"yes"}, describe(outcomes)
    for o in outcomes:  # the allocator made the blocks shareable and gave the handles
        sharing = o.result("sharing")
        assert sharing["enabled"] and sharing["shareable_segments"] >= 1 and sharing["handles_exported"] >= 6, sharing


# A rank that takes its buffer back (here: it aborts the group) while a slow peer still
# reads it in place: the peer must fail, never succeed with what the owner wrote since.
OWNER_LEAVES = r'''
from torch_npu_sim.distributed import backend_of, faults
dist.init_process_group("npusim", timeout=timedelta(seconds=8))
dev = torch.device("npusim", RANK)
n = MIB // 2
big = torch.empty(n * WORLD, device=dev)
dist.all_gather_into_tensor(big, torch.full((n,), float(RANK + 1), device=dev))  # warm up: peer access known
mine = torch.full((n,), float(RANK + 1), device=dev)
if RANK == 1:
    faults.inject("delay:3000", rank=1, op="all_gather", at="read")  # slow while reading rank 0's input
work = dist.all_gather_into_tensor(big, mine, async_op=True)
if RANK == 0:
    time.sleep(1.0)  # rank 0 has read rank 1's input and waits for rank 1
    backend_of(dist.group.WORLD).abort()
    try:
        work.wait()
        report(outcome="ok")
    except Exception as e:
        report(outcome=type(e).__name__)
    mine.fill_(-999.0)  # the program owns its buffer again
    time.sleep(8)  # alive while rank 1 finishes
    report(done=True)
else:
    try:
        work.wait()
        report(outcome="ok", correct=bool(torch.equal(big.cpu()[:n], torch.ones(n))))
    except Exception as e:
        report(outcome=type(e).__name__, message=str(e))
'''.replace("MIB", str(MiB))


def test_a_reader_never_succeeds_on_a_buffer_its_owner_took_back():
    outcomes = launch(OWNER_LEAVES, 2, env={"NPUSIM_PEER_TIMEOUT": "30"}, timeout=120)
    assert outcomes[0].result("outcome") != "ok", describe(outcomes)
    reader = outcomes[1]
    if reader.result("outcome") == "ok":
        assert reader.result("correct"), "the reader returned the owner's overwritten buffer"
    else:
        assert reader.result("outcome") == "DistBackendError", describe(outcomes)


# After fork, the child's view of a shared buffer is a snapshot: the parent's later writes
# stay unseen, and the child's writes never reach the parent.
FORK_SNAPSHOT = r'''
dist.init_process_group("npusim", timeout=timedelta(seconds=30))
t = torch.ones(2 * MIB, device=torch.device("npusim", RANK))
dist.all_reduce(t)  # t's block is shareable and shared
r, w = os.pipe()
r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    torch.set_num_threads(1)
    os.write(w2, b"x")
    os.read(r, 1)  # the parent has written by now
    ok = t.min().item() == 2.0 and t.max().item() == 2.0
    t.fill_(-1.0)
    os._exit(0 if ok else 1)
os.read(r2, 1)
t.fill_(5.0)
os.write(w, b"x")
_, status = os.waitpid(pid, 0)
report(child_status=status, parent_sees=t.cpu().unique().tolist())
dist.destroy_process_group()
'''.replace("MIB", str(MiB))


def test_forked_child_sees_a_snapshot():
    outcomes = launch(FORK_SNAPSHOT, 2, timeout=120)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("child_status") == 0, describe(outcomes)
        assert o.result("parent_sees") == [5.0]


# Ranks in separate PID namespaces (containers sharing network and IPC, each rank PID 1):
# /proc/<pid> names another process there, so the group must stream, with exact results.
PID_NAMESPACES = r'''
import subprocess
if os.environ.get("IN_PID_NS") != "1":
    env = dict(os.environ, IN_PID_NS="1")
    sys.exit(subprocess.call(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable,
                              os.path.abspath(__file__)], env=env))
from torch_npu_sim.distributed import backend_of
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
dev = torch.device("npusim", RANK)
failures = []
for it in range(3):
    n = MIB + it
    t = torch.full((n,), float(RANK + it), device=dev)
    dist.all_reduce(t)
    if not torch.equal(t.cpu(), torch.full((n,), float(sum(r + it for r in range(WORLD))))):
        failures.append(f"all_reduce {it}")
    big = torch.empty(n * WORLD, device=dev)
    dist.all_gather_into_tensor(big, torch.full((n,), float(RANK), device=dev))
    if not torch.equal(big.cpu(), torch.arange(WORLD).float().repeat_interleave(n)):
        failures.append(f"all_gather {it}")
report(failures=failures, peer_access=backend_of(dist.group.WORLD).peer_access, pid=os.getpid())
dist.destroy_process_group()
'''.replace("MIB", str(MiB))


def _can_unshare_pid():
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_unshare_pid(), reason="needs unshare --pid (root or user namespaces)")
def test_ranks_in_separate_pid_namespaces_stream():
    outcomes = launch(PID_NAMESPACES, 2, timeout=180)
    check_all(outcomes)
    assert [o.result("pid") for o in outcomes] == [1, 1], describe(outcomes)
    assert {o.result("peer_access") for o in outcomes} == {"no"}, describe(outcomes)
