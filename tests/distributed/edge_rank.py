# Rank side of the edge-case suite (run by launcher, see test_edge_cases.py): shapes and
# argument combinations the main matrix does not reach. Every rank computes the expected
# result locally and reports each case as "ok" or the failure. EDGE_BACKEND / EDGE_DEVICE
# select another backend (e.g. gloo on cpu) to check the expected values themselves.
import traceback

BACKEND = os.environ.get("EDGE_BACKEND", "npusim")
DEVICE = os.environ.get("EDGE_DEVICE", "npusim")
if BACKEND == "npusim":
    import torch_npu_sim  # noqa: F401
dist.init_process_group(BACKEND, timeout=timedelta(seconds=60))
dev = torch.device(DEVICE, RANK) if DEVICE == "npusim" else torch.device("cpu")
R = dist.ReduceOp
outcomes = {}
# gloo's reduce_scatter has no int16 kernel: it is checked with int32 there
SMALL_INT = torch.int16 if BACKEND == "npusim" else torch.int32


def value(rank, n, dtype=torch.float32, salt=0):
    base = (torch.arange(n) + rank + salt) % 3 + 1
    return (base % 2 == 0) if dtype == torch.bool else base.to(dtype)


def everyone(n, dtype=torch.float32, salt=0):
    return torch.stack([value(r, n, dtype, salt) for r in range(WORLD)])


def reduced(stack, op):
    dtype = stack.dtype
    wide = stack.to(torch.float64) if dtype.is_floating_point else stack.to(torch.int64)
    if op == R.SUM:
        return wide.sum(0).to(dtype)
    if op == R.PRODUCT:
        return wide.prod(0).to(dtype)
    if op == R.MIN:
        return wide.min(0).values.to(dtype)
    if op == R.MAX:
        return wide.max(0).values.to(dtype)
    if op == R.AVG:
        return (wide.sum(0) / WORLD).to(dtype)
    out = stack[0].clone()
    for row in stack[1:]:
        if op == R.BAND:
            out &= row
        elif op == R.BOR:
            out |= row
        else:
            out ^= row
    return out


def check(name, got, want):
    got = got.cpu()
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    torch.testing.assert_close(got, want, msg=lambda m: f"{name}: {m}")


def case(name):
    def wrap(fn):
        try:
            fn()
            outcomes[name] = "ok"
        except Exception:
            outcomes[name] = traceback.format_exc(limit=4)[-1500:]
        return fn
    return wrap


def on_dev(t):
    return t.to(dev)


@case("zero-element tensors: all_reduce, broadcast, all_gather_into_tensor, reduce_scatter_tensor")
def _():
    t = on_dev(torch.zeros(0))
    dist.all_reduce(t)
    dist.broadcast(t, src=WORLD - 1)
    out = on_dev(torch.zeros(0))
    dist.all_gather_into_tensor(out, t)
    dist.reduce_scatter_tensor(out, on_dev(torch.zeros(0)))
    check("empty", t, torch.zeros(0))
    # the group still computes afterwards
    t = on_dev(torch.ones(2))
    dist.all_reduce(t)
    check("after empty", t, torch.full((2,), float(WORLD)))


@case("0-dim tensors: all_reduce MAX, broadcast")
def _():
    t = on_dev(torch.tensor(float(RANK + 1)))
    dist.all_reduce(t, op=R.MAX)
    check("scalar max", t, torch.tensor(float(WORLD)))
    t = on_dev(torch.tensor(RANK * 10, dtype=torch.int64))
    dist.broadcast(t, src=WORLD - 1)
    check("scalar broadcast", t, torch.tensor((WORLD - 1) * 10))


@case("multi-dim tensors: all_reduce 3x5x7, all_gather_into_tensor stacked output")
def _():
    t = on_dev(value(RANK, 105).reshape(3, 5, 7))
    dist.all_reduce(t)
    check("3d", t, everyone(105).sum(0).reshape(3, 5, 7))
    out = on_dev(torch.zeros(WORLD, 3, 5))
    dist.all_gather_into_tensor(out, on_dev(value(RANK, 15).reshape(3, 5)))
    check("stacked", out, everyone(15).reshape(WORLD, 3, 5))


for op in [R.SUM, R.PRODUCT, R.MIN, R.MAX, R.BAND, R.BOR, R.BXOR]:
    for root in range(WORLD):
        @case(f"reduce {op} int32 root={root}")
        def _():
            t = on_dev(value(RANK, 13, torch.int32))
            dist.reduce(t, dst=root, op=op)
            if RANK == root:  # other ranks' buffers are unspecified (gloo uses them as scratch)
                check("reduce", t, reduced(everyone(13, torch.int32), op))

    @case(f"reduce_scatter_tensor {op} {str(SMALL_INT)[6:]}")
    def _():
        n = 11
        full = torch.cat([value(RANK, n, SMALL_INT, salt=r) for r in range(WORLD)])
        out = on_dev(torch.zeros(n, dtype=SMALL_INT))
        dist.reduce_scatter_tensor(out, on_dev(full), op=op)
        check("rs", out, reduced(everyone(n, SMALL_INT, salt=RANK), op))

for op in [R.PRODUCT, R.MIN, R.AVG]:
    @case(f"reduce_scatter list {op} float64 and reduce root=0")
    def _():
        n = 9
        ins = [on_dev(value(RANK, n, torch.float64, salt=r)) for r in range(WORLD)]
        out = on_dev(torch.zeros(n, dtype=torch.float64))
        dist.reduce_scatter(out, ins, op=op)
        check("rs list", out, reduced(everyone(n, torch.float64, salt=RANK), op))
        t = on_dev(value(RANK, n, torch.float64))
        dist.reduce(t, dst=0, op=op)
        if RANK == 0:
            check("reduce", t, reduced(everyone(n, torch.float64), op))

for root in range(WORLD):
    @case(f"broadcast, gather, scatter with root={root}")
    def _():
        t = on_dev(value(RANK, 17, torch.int64))
        dist.broadcast(t, src=root)
        check("broadcast", t, value(root, 17, torch.int64))
        outs = [on_dev(torch.zeros(17, dtype=torch.int64)) for _ in range(WORLD)] if RANK == root else None
        dist.gather(on_dev(value(RANK, 17, torch.int64)), outs, dst=root)
        if RANK == root:
            for r in range(WORLD):
                check(f"gather[{r}]", outs[r], value(r, 17, torch.int64))
        ins = [on_dev(value(r, 17, torch.int64, salt=4)) for r in range(WORLD)] if RANK == root else None
        out = on_dev(torch.zeros(17, dtype=torch.int64))
        dist.scatter(out, ins, src=root)
        check("scatter", out, value(RANK, 17, torch.int64, salt=4))


@case("messages larger than a shared-memory stream: broadcast, all_gather, all_to_all_single uneven")
def _():
    m = 600_001  # 2.4 MB of float32: more than the 1 MiB default stream
    t = on_dev(value(RANK, m))
    dist.broadcast(t, src=WORLD - 1)
    check("big broadcast", t, value(WORLD - 1, m))
    outs = [on_dev(torch.zeros(m)) for _ in range(WORLD)]
    dist.all_gather(outs, on_dev(value(RANK, m, salt=1)))
    for r in range(WORLD):
        check(f"big all_gather[{r}]", outs[r], value(r, m, salt=1))
    rows = lambda src, dst: 50_000 * ((src + 2 * dst) % 3 + 1)  # noqa: E731
    send = [rows(RANK, p) for p in range(WORLD)]
    recv = [rows(p, RANK) for p in range(WORLD)]
    inp = on_dev(torch.cat([torch.full((send[p], 2), float(10 * RANK + p)) for p in range(WORLD)]))
    out = on_dev(torch.zeros(sum(recv), 2))
    dist.all_to_all_single(out, inp, output_split_sizes=recv, input_split_sizes=send)
    check("big a2a", out, torch.cat([torch.full((recv[p], 2), float(10 * p + RANK)) for p in range(WORLD)]))


@case("all_to_all_single with zero-sized splits")
def _():
    # rank r sends nothing to itself and p+1 rows to every other rank p
    send = [0 if p == RANK else p + 1 for p in range(WORLD)]
    recv = [0 if p == RANK else RANK + 1 for p in range(WORLD)]
    inp = on_dev(torch.cat([torch.full((send[p], 3), float(10 * RANK + p)) for p in range(WORLD)]))
    out = on_dev(torch.full((sum(recv), 3), -1.0))
    dist.all_to_all_single(out, inp, output_split_sizes=recv, input_split_sizes=send)
    want = torch.cat([torch.full((recv[p], 3), float(10 * p + RANK)) for p in range(WORLD)])
    check("a2a zero splits", out, want)


@case("all_to_all list with different sizes per peer")
def _():
    ins = [on_dev(value(RANK, 3 + p, salt=p)) for p in range(WORLD)]
    outs = [on_dev(torch.zeros(3 + RANK)) for _ in range(WORLD)]
    dist.all_to_all(outs, ins)
    for p in range(WORLD):
        check(f"a2a list[{p}]", outs[p], value(p, 3 + RANK, salt=RANK))


@case("non-contiguous: broadcast into a transposed view, reduce_scatter list of strided inputs")
def _():
    base = on_dev(torch.zeros(4, 6))
    view = base.t()  # 6x4, not contiguous
    view.copy_(on_dev(value(RANK, 24).reshape(6, 4)))
    dist.broadcast(view, src=0)
    check("broadcast view", base.t(), value(0, 24).reshape(6, 4))
    ins = [on_dev(value(RANK, 2 * 8, salt=p).reshape(8, 2))[:, 1] for p in range(WORLD)]
    assert not ins[0].is_contiguous()
    out = on_dev(torch.zeros(8))
    dist.reduce_scatter(out, ins)
    want = torch.stack([value(r, 16, salt=RANK).reshape(8, 2)[:, 1] for r in range(WORLD)]).sum(0)
    check("rs strided", out, want)


@case("coalescing manager: all_gather_into_tensor and reduce_scatter_tensor (FSDP's path)")
def _():
    sizes = [3, 1031, 1]
    ins = [on_dev(value(RANK, k, salt=k)) for k in sizes]
    outs = [on_dev(torch.zeros(WORLD * k)) for k in sizes]
    with dist._coalescing_manager(async_ops=True) as cm:
        for o, i in zip(outs, ins):
            dist.all_gather_into_tensor(o, i)
    cm.wait()
    for k, o in zip(sizes, outs):
        check(f"coalesced all_gather {k}", o, everyone(k, salt=k).reshape(-1))
    fulls = [on_dev(torch.cat([value(RANK, k, salt=p + k) for p in range(WORLD)])) for k in sizes]
    outs = [on_dev(torch.zeros(k)) for k in sizes]
    with dist._coalescing_manager():
        for o, f in zip(outs, fulls):
            dist.reduce_scatter_tensor(o, f, op=R.AVG)
    for k, o in zip(sizes, outs):
        check(f"coalesced reduce_scatter {k}", o, everyone(k, salt=RANK + k).sum(0) / WORLD)


@case("many async ops in flight, waited in reverse order")
def _():
    ts = [on_dev(torch.full((100 + i,), float(RANK + i))) for i in range(16)]
    works = [dist.all_reduce(t, async_op=True) for t in ts]
    for w in reversed(works):
        w.wait()
    for i, t in enumerate(ts):
        check(f"async {i}", t, torch.full((100 + i,), float(sum(r + i for r in range(WORLD)))))


@case("futures of all_gather_into_tensor and reduce_scatter_tensor")
def _():
    out = on_dev(torch.zeros(WORLD * 4))
    fut = dist.all_gather_into_tensor(out, on_dev(value(RANK, 4)), async_op=True).get_future()
    fut.wait()
    check("ag future", out, everyone(4).reshape(-1))
    out = on_dev(torch.zeros(4))
    w = dist.reduce_scatter_tensor(out, on_dev(torch.cat([value(RANK, 4, salt=p) for p in range(WORLD)])),
                                   async_op=True)
    w.get_future().wait()  # (is_completed() after this: test_work_is_completed_once_its_future_is)
    check("rs future", out, everyone(4, salt=RANK).sum(0))


@case("subgroup of ranks [1..n-1] (rank 0 outside) and interleaved world/subgroup ops")
def _():
    members = list(range(1, WORLD))
    g = dist.new_group(members)
    if RANK in members:
        t = on_dev(torch.full((6,), float(RANK)))
        w1 = dist.all_reduce(t, group=g, async_op=True)
        u = on_dev(torch.full((6,), 1.0))
        w2 = dist.all_reduce(u, async_op=True)
        w1.wait()
        w2.wait()
        check("subgroup", t, torch.full((6,), float(sum(members))))
        check("world", u, torch.full((6,), float(WORLD)))
        # group-local rank numbering: broadcast from the subgroup's first member
        b = on_dev(torch.full((3,), float(RANK)))
        dist.broadcast(b, group=g, group_src=0)
        check("subgroup broadcast", b, torch.full((3,), 1.0))
    else:
        u = on_dev(torch.full((6,), 1.0))
        dist.all_reduce(u)
        check("world", u, torch.full((6,), float(WORLD)))
    dist.barrier()
    dist.destroy_process_group(g)


@case("all_reduce of a tensor on a cpu and one on npusim in one run, result devices kept")
def _():
    c = value(RANK, 7)
    d = on_dev(value(RANK, 7, salt=1))
    dist.all_reduce(c)
    dist.all_reduce(d)
    assert c.device.type == "cpu" and d.device == dev, (c.device, d.device)
    check("cpu", c, everyone(7).sum(0))
    check("dev", d, everyone(7, salt=1).sum(0))


report(outcomes=outcomes)
dist.destroy_process_group()
