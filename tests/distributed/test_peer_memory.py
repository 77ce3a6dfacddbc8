"""Large collectives that read peers' device memory in place (PeerMemory.h): results on
real processes against exact references, the cases that must stream instead, and dead
peers and forked children while buffers are shared."""
import signal
import time

import pytest

from launcher import assert_clean, describe, launch

MiB = 1 << 20

# Integer-valued inputs keep every sum exact, so each path must give the reference bit for bit.
CASES = r'''
from torch_npu_sim.distributed import backend_of
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
dev = torch.device(os.environ.get("DEVICE", "npusim"), RANK if os.environ.get("DEVICE", "npusim") == "npusim" else 0)
failures = []
def inputs(numel, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(-8, 8, (numel,), generator=g).to(dtype) for _ in range(WORLD)]
def check(name, got, want):
    if not torch.equal(got.cpu(), want):
        failures.append(f"{name}: max error {(got.cpu().double() - want.double()).abs().max().item()}")
for numel in (MIB // 4 + 3, 3 * MIB + 1):
    for dtype in (torch.float32, torch.bfloat16, torch.int64):
        xs = inputs(numel * WORLD, dtype, numel)
        total = sum(x.double() for x in xs)
        for op, want in ((dist.ReduceOp.SUM, total), (dist.ReduceOp.MAX, torch.stack(xs).double().amax(0)),
                         (dist.ReduceOp.AVG, total / WORLD)):
            if op == dist.ReduceOp.AVG and not dtype.is_floating_point:
                continue
            t = xs[RANK].to(dev)
            dist.all_reduce(t, op=op)
            check(f"all_reduce {dtype} {numel} {op}", t, want.to(dtype))
        chunk = numel
        out = torch.empty(chunk, dtype=dtype, device=dev)
        dist.reduce_scatter_tensor(out, xs[RANK].to(dev))
        check(f"reduce_scatter_tensor {dtype}", out, total[RANK * chunk:(RANK + 1) * chunk].to(dtype))
        parts = [x[:chunk] for x in xs]
        big = torch.zeros(chunk * WORLD, dtype=dtype, device=dev)
        big[RANK * chunk:(RANK + 1) * chunk] = parts[RANK].to(dev)
        dist.all_gather_into_tensor(big, big[RANK * chunk:(RANK + 1) * chunk])  # input inside the output (FSDP)
        check(f"all_gather_into_tensor in place {dtype}", big, torch.cat(parts))
        outs = [torch.empty(chunk, dtype=dtype, device=dev) for _ in range(WORLD)]
        dist.all_gather(outs, parts[RANK].to(dev))
        check(f"all_gather {dtype}", torch.cat(outs), torch.cat(parts))
        for root in (0, WORLD - 1):
            b = xs[RANK].to(dev)
            dist.broadcast(b, src=root)
            check(f"broadcast {dtype} from {root}", b, xs[root])
        out = torch.empty(chunk, dtype=dtype, device=dev)  # separate input tensors: streamed
        dist.reduce_scatter(out, [xs[RANK][p * chunk:(p + 1) * chunk].to(dev) for p in range(WORLD)])
        check(f"reduce_scatter list {dtype}", out, total[RANK * chunk:(RANK + 1) * chunk].to(dtype))
# a non-contiguous tensor goes through a contiguous copy
xs = inputs(2 * MIB, torch.float32, 7)
t = xs[RANK].to(dev).view(-1, 2).t()
dist.all_reduce(t)
check("all_reduce transposed", t.t().reshape(-1), sum(xs))
# every rank ends with the same bits, also where sums round (random floats)
g = torch.Generator().manual_seed(RANK)
r = torch.randn(3 * MIB, generator=g).to(dev)
dist.all_reduce(r)
gathered = [torch.empty_like(r) for _ in range(WORLD)]
dist.all_gather(gathered, r)
if not all(torch.equal(x.cpu(), r.cpu()) for x in gathered):
    failures.append("ranks disagree on a rounded sum")
report(failures=failures, peer_access=backend_of(dist.group.WORLD).peer_access)
dist.destroy_process_group()
'''.replace("MIB", str(MiB))


def run_cases(world, **env):
    outcomes = launch(CASES, world, env=env, timeout=300)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("failures") == [], (o.rank, o.result("failures"))
    return {o.result("peer_access") for o in outcomes}


@pytest.mark.parametrize("world", [2, 3])
def test_in_place_collectives_match_the_reference(world):
    assert run_cases(world) == {"yes"}


def test_streamed_collectives_give_the_same_results():
    assert run_cases(3, NPUSIM_PEER_ACCESS="0") == {"no"}


def test_tcp_groups_and_cpu_tensors_stream():
    assert run_cases(2, NPUSIM_TRANSPORT="tcp") == {"no"}
    assert run_cases(2, DEVICE="cpu") == {"unknown"}  # host memory is never shared


def test_bad_setting_fails_every_rank_named():
    outcomes = launch('''
try:
    dist.init_process_group("npusim", timeout=timedelta(seconds=20))
except Exception as e:
    report(init_error=type(e).__name__, message=str(e))
''', 2, env={"NPUSIM_PEER_ACCESS": "yes"}, timeout=60)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("init_error") == "ValueError" and "NPUSIM_PEER_ACCESS" in o.result("message"), describe(outcomes)


LOOP = r'''
from torch_npu_sim.distributed import backend_of
dist.init_process_group("npusim", timeout=timedelta(seconds=float(os.environ.get("PG_TIMEOUT", "20"))))
t = torch.ones(4 * MIB, device=torch.device("npusim", RANK))
dist.all_reduce(t)
report(peer_access=backend_of(dist.group.WORLD).peer_access)
start = time.time()
try:
    for i in range(10**6):
        dist.all_reduce(t)
        open(os.path.join(os.environ["DIST_TEST_DIR"], f"progress{RANK}"), "w").write(str(i))
except Exception as e:
    report(error=type(e).__name__, message=str(e), after=time.time() - start)
'''.replace("MIB", str(MiB))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_a_peer_killed_or_stopped_mid_collective_fails_the_survivors(sig):
    import os

    def control(procs, workdir):
        # strike once every rank is looping, at no particular phase of a collective
        deadline = time.time() + 60
        while time.time() < deadline and not all(os.path.exists(os.path.join(workdir, f"progress{r}")) for r in range(3)):
            time.sleep(0.05)
        time.sleep(0.3)
        procs[1].send_signal(sig)

    outcomes = launch(LOOP, 3, env={"PG_TIMEOUT": "5", "NPUSIM_PEER_TIMEOUT": "2"}, timeout=120,
                      linger=10, control=control)
    for r in (0, 2):
        o = outcomes[r]
        assert o.result("peer_access") == "yes", describe(outcomes)
        assert o.result("error") == "DistBackendError", describe(outcomes)
        assert "rank 1" in o.result("message"), o.result("message")


def test_forked_child_writes_do_not_reach_the_parent():
    outcomes = launch(r'''
dist.init_process_group("npusim", timeout=timedelta(seconds=30))
t = torch.ones(2 * MIB, device=torch.device("npusim", RANK))
dist.all_reduce(t)  # shares t's memory with the peer
pid = os.fork()
if pid == 0:
    torch.set_num_threads(1)  # GNU OpenMP's pool does not survive fork (as in DataLoader workers)
    t.fill_(-1.0)
    os._exit(0 if t.min().item() == -1.0 else 1)
_, status = os.waitpid(pid, 0)
report(child_status=status, parent_sees=t.cpu().unique().tolist())
dist.all_reduce(t)
report(after=t.cpu().unique().tolist())
dist.destroy_process_group()
'''.replace("MIB", str(MiB)), 2, timeout=120)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("child_status") == 0
        assert o.result("parent_sees") == [2.0]
        assert o.result("after") == [4.0]


# More ranks than cores (the case a laptop or CI runner simulates): every algorithm by size
# (direct, streamed rings, in place) at 8 and 16 ranks, and broadcast, each rank on its own device.
MANY = r"""
from torch_npu_sim.distributed import backend_of
dist.init_process_group("npusim", timeout=timedelta(seconds=120))
dev = torch.device("npusim", RANK)
failures = []
def x(rank, numel):  # small integers: every sum is exact, in any order
    return ((torch.arange(numel) * 7 + rank * 13) % 17 - 8).float()
def total(numel):
    return sum(x(r, numel) for r in range(WORLD))
for numel in (1000, 96 * 1024 + 5, (MIB // 4) * 3 + 7):  # 4 KiB direct; 384 KiB rings; 3 MiB in place
    t = x(RANK, numel).to(dev)
    dist.all_reduce(t)
    if not torch.equal(t.cpu(), total(numel)):
        failures.append(f"all_reduce {numel}")
    chunk = numel // WORLD
    out = torch.empty(chunk, device=dev)
    dist.reduce_scatter_tensor(out, x(RANK, chunk * WORLD).to(dev))
    if not torch.equal(out.cpu(), total(chunk * WORLD)[RANK * chunk:(RANK + 1) * chunk]):
        failures.append(f"reduce_scatter_tensor {chunk * WORLD}")
    b = x(RANK, numel).to(dev)
    dist.broadcast(b, src=WORLD // 2)
    if not torch.equal(b.cpu(), x(WORLD // 2, numel)):
        failures.append(f"broadcast {numel}")
for chunk in (1000, MIB // 4 + 3):  # streamed; in place
    big = torch.empty(chunk * WORLD, device=dev)
    dist.all_gather_into_tensor(big, x(RANK, chunk).to(dev))
    if not torch.equal(big.cpu(), torch.cat([x(r, chunk) for r in range(WORLD)])):
        failures.append(f"all_gather_into_tensor {chunk}")
report(failures=failures, peer_access=backend_of(dist.group.WORLD).peer_access)
dist.destroy_process_group()
""".replace("MIB", str(MiB))


@pytest.mark.parametrize("world", [8, 16])
def test_more_ranks_than_cores(world):
    outcomes = launch(MANY, world, env={"NPUSIM_DEVICE_COUNT": str(world)}, timeout=600)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("failures") == [], (o.rank, o.result("failures"))
        assert o.result("peer_access") == "yes", describe(outcomes)
