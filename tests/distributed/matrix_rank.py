# Rank side of the collective matrix: every rank computes what every collective must
# produce from the inputs all ranks use (deterministic per rank), runs the collective on
# the npusim backend, and reports each case as "ok" or the mismatch. (Run by launcher.)
import traceback

DEVICE = os.environ.get("MATRIX_DEVICE", "npusim")
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
dev = torch.device(DEVICE, RANK) if DEVICE == "npusim" else torch.device("cpu")
R = dist.ReduceOp
FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
INTS = [torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64]
DTYPES = FLOATS + INTS + [torch.bool]
SIZES = [int(s) for s in os.environ.get("MATRIX_SIZES", "7,1031").split(",")]
outcomes = {}


def value(rank, n, dtype, salt=0):
    """Rank `rank`'s input: small values, so sums and products are exact in every dtype."""
    base = (torch.arange(n) + rank + salt) % 3 + 1
    return (base % 2 == 0) if dtype == torch.bool else base.to(dtype)


def everyone(n, dtype, salt=0):
    return torch.stack([value(r, n, dtype, salt) for r in range(WORLD)])


def reduced(stack, op, dtype):
    if dtype == torch.bool:
        if op in (R.SUM, R.MAX, R.BOR, R.AVG):
            return stack.any(0)
        if op in (R.PRODUCT, R.MIN, R.BAND):
            return stack.all(0)
        if op == R.BXOR:
            return stack.to(torch.int64).sum(0) % 2 == 1
    wide = stack.to(torch.float64) if dtype.is_floating_point else stack.to(torch.int64)
    if op == R.SUM:
        out = wide.sum(0)
    elif op == R.AVG:
        out = wide.sum(0) / WORLD if dtype.is_floating_point else torch.div(wide.sum(0), WORLD, rounding_mode="trunc")
    elif op == R.PRODUCT:
        out = wide.prod(0)
    elif op == R.MIN:
        out = wide.min(0).values
    elif op == R.MAX:
        out = wide.max(0).values
    elif op == R.BAND:
        out = stack[0].clone()
        for row in stack[1:]:
            out &= row
    elif op == R.BOR:
        out = stack[0].clone()
        for row in stack[1:]:
            out |= row
    elif op == R.BXOR:
        out = stack[0].clone()
        for row in stack[1:]:
            out ^= row
    return out.to(dtype)


def ops_for(dtype):
    ops = [R.SUM, R.PRODUCT, R.MIN, R.MAX]
    if dtype.is_floating_point:
        ops += [R.AVG]
    else:
        ops += [R.BAND, R.BOR, R.BXOR]
    if dtype == torch.int64:
        ops += [R.AVG]
    return ops


def check(name, got, want):
    got = got.cpu() if isinstance(got, torch.Tensor) else got
    if got.device.type != "cpu":
        raise AssertionError(f"{name}: result on {got.device}")
    tol = dict(rtol=1e-2, atol=1e-2) if want.dtype in (torch.float16, torch.bfloat16) else {}
    torch.testing.assert_close(got, want, **tol, msg=lambda m: f"{name}: {m}")


def case(name):
    def wrap(fn):
        try:
            fn()
            outcomes[name] = "ok"
        except Exception:
            outcomes[name] = traceback.format_exc(limit=3)[-1500:]
        return fn
    return wrap


def on_dev(t):
    return t.to(dev)


for n in SIZES:
    for dtype in DTYPES:
        tag = f"n={n} {str(dtype)[6:]}"
        for op in ops_for(dtype):
            @case(f"all_reduce {op} {tag}")
            def _():
                t = on_dev(value(RANK, n, dtype))
                dist.all_reduce(t, op=op)
                check("all_reduce", t, reduced(everyone(n, dtype), op, dtype))

        @case(f"reduce SUM root=last {tag}")
        def _():
            t = on_dev(value(RANK, n, dtype))
            dist.reduce(t, dst=WORLD - 1, op=R.SUM)
            if RANK == WORLD - 1:
                check("reduce", t, reduced(everyone(n, dtype), R.SUM, dtype))
            else:
                check("reduce (non-root input untouched)", t, value(RANK, n, dtype))

        @case(f"broadcast root=1 {tag}")
        def _():
            t = on_dev(value(RANK, n, dtype))
            dist.broadcast(t, src=1)
            check("broadcast", t, value(1, n, dtype))

        @case(f"all_gather {tag}")
        def _():
            outs = [on_dev(torch.zeros(n, dtype=dtype)) for _ in range(WORLD)]
            dist.all_gather(outs, on_dev(value(RANK, n, dtype)))
            for r in range(WORLD):
                check(f"all_gather[{r}]", outs[r], value(r, n, dtype))

        @case(f"all_gather_into_tensor {tag}")
        def _():
            out = on_dev(torch.zeros(WORLD * n, dtype=dtype))
            dist.all_gather_into_tensor(out, on_dev(value(RANK, n, dtype)))
            check("all_gather_into_tensor", out, everyone(n, dtype).reshape(-1))

        @case(f"gather root=0 {tag}")
        def _():
            outs = [on_dev(torch.zeros(n, dtype=dtype)) for _ in range(WORLD)] if RANK == 0 else None
            dist.gather(on_dev(value(RANK, n, dtype)), outs, dst=0)
            if RANK == 0:
                for r in range(WORLD):
                    check(f"gather[{r}]", outs[r], value(r, n, dtype))

        @case(f"scatter root=0 {tag}")
        def _():
            ins = [on_dev(value(r, n, dtype, salt=5)) for r in range(WORLD)] if RANK == 0 else None
            out = on_dev(torch.zeros(n, dtype=dtype))
            dist.scatter(out, ins, src=0)
            check("scatter", out, value(RANK, n, dtype, salt=5))

        for op in [R.SUM, R.MAX] + ([R.AVG] if dtype.is_floating_point else []):
            @case(f"reduce_scatter list {op} {tag}")
            def _():
                ins = [on_dev(value(RANK, n, dtype, salt=r)) for r in range(WORLD)]
                out = on_dev(torch.zeros(n, dtype=dtype))
                dist.reduce_scatter(out, ins, op=op)
                check("reduce_scatter", out, reduced(everyone(n, dtype, salt=RANK), op, dtype))

            @case(f"reduce_scatter_tensor {op} {tag}")
            def _():
                full = torch.cat([value(RANK, n, dtype, salt=r) for r in range(WORLD)])
                out = on_dev(torch.zeros(n, dtype=dtype))
                dist.reduce_scatter_tensor(out, on_dev(full), op=op)
                check("reduce_scatter_tensor", out, reduced(everyone(n, dtype, salt=RANK), op, dtype))

        @case(f"all_to_all list {tag}")
        def _():
            ins = [on_dev(value(RANK, n, dtype, salt=10 * r)) for r in range(WORLD)]
            outs = [on_dev(torch.zeros(n, dtype=dtype)) for _ in range(WORLD)]
            dist.all_to_all(outs, ins)
            for r in range(WORLD):
                check(f"all_to_all[{r}]", outs[r], value(r, n, dtype, salt=10 * RANK))

        @case(f"send/recv ring {tag}")
        def _():
            got = on_dev(torch.zeros(n, dtype=dtype))
            nxt, prv = (RANK + 1) % WORLD, (RANK - 1) % WORLD
            if RANK % 2 == 0:
                dist.send(on_dev(value(RANK, n, dtype)), nxt)
                dist.recv(got, prv)
            else:
                dist.recv(got, prv)
                dist.send(on_dev(value(RANK, n, dtype)), nxt)
            check("recv", got, value(prv, n, dtype))

n = SIZES[-1]


@case("all_reduce PREMUL_SUM float32 and bfloat16")
def _():
    for dtype in (torch.float32, torch.bfloat16):
        t = on_dev(value(RANK, n, dtype))
        dist.all_reduce(t, op=dist._make_nccl_premul_sum(2.0))
        check("premul", t, (everyone(n, torch.float64) * 2).sum(0).to(dtype))


@case("reduce_scatter_tensor PREMUL_SUM with a tensor factor")
def _():
    full = torch.cat([value(RANK, n, torch.float32, salt=r) for r in range(WORLD)])
    out = on_dev(torch.zeros(n))
    dist.reduce_scatter_tensor(out, on_dev(full), op=dist._make_nccl_premul_sum(on_dev(torch.tensor(0.5))))
    check("premul rs", out, everyone(n, torch.float32, salt=RANK).sum(0) * 0.5)


@case("all_reduce large (reduce-scatter + all-gather path), odd count")
def _():
    big = 70001
    t = on_dev(value(RANK, big, torch.float32))
    dist.all_reduce(t)
    check("big", t, everyone(big, torch.float32).sum(0))
    t = on_dev(value(RANK, big, torch.float64))
    dist.all_reduce(t, op=R.AVG)
    check("big avg", t, everyone(big, torch.float64).sum(0) / WORLD)


@case("non-contiguous input and output")
def _():
    base = on_dev(torch.zeros(n, 2))
    base[:, 0] = on_dev(value(RANK, n, torch.float32))
    col = base[:, 0]
    assert not col.is_contiguous()
    dist.all_reduce(col)
    check("noncontig all_reduce", base[:, 0], everyone(n, torch.float32).sum(0))
    check("noncontig untouched", base[:, 1], torch.zeros(n))
    outs = [on_dev(torch.zeros(2, n)).t()[:, 0] for _ in range(WORLD)]
    dist.all_gather(outs, on_dev(value(RANK, n, torch.float32)))
    for r in range(WORLD):
        check("noncontig all_gather", outs[r], value(r, n, torch.float32))


@case("cpu tensors and npusim tensors in one group")
def _():
    c = value(RANK, n, torch.float32)
    dist.all_reduce(c)
    check("cpu all_reduce", c, everyone(n, torch.float32).sum(0))


@case("complex all_reduce SUM")
def _():
    t = on_dev(torch.complex(value(RANK, n, torch.float32), value(RANK, n, torch.float32, salt=1)))
    dist.all_reduce(t)
    want = torch.complex(everyone(n, torch.float32).sum(0), everyone(n, torch.float32, salt=1).sum(0))
    check("complex", t, want)


@case("all_reduce_coalesced and coalescing manager")
def _():
    a, b = on_dev(value(RANK, 5, torch.float32)), on_dev(value(RANK, n, torch.float32, salt=1))
    dist.all_reduce_coalesced([a, b])
    check("coalesced a", a, everyone(5, torch.float32).sum(0))
    check("coalesced b", b, everyone(n, torch.float32, salt=1).sum(0))
    a, b = on_dev(value(RANK, 5, torch.float32)), on_dev(value(RANK, n, torch.float32, salt=1))
    with dist._coalescing_manager(async_ops=True) as cm:
        dist.all_reduce(a)
        dist.all_reduce(b)
    cm.wait()
    check("manager a", a, everyone(5, torch.float32).sum(0))
    check("manager b", b, everyone(n, torch.float32, salt=1).sum(0))


@case("all_gather_coalesced")
def _():
    ins = [on_dev(value(RANK, 3, torch.float32)), on_dev(value(RANK, n, torch.float32, salt=2))]
    outs = [[on_dev(torch.zeros(3)), on_dev(torch.zeros(n))] for _ in range(WORLD)]  # [rank][input]
    dist.all_gather_coalesced(outs, ins)
    for r in range(WORLD):
        check("agc0", outs[r][0], value(r, 3, torch.float32))
        check("agc1", outs[r][1], value(r, n, torch.float32, salt=2))


@case("all_to_all_single even and uneven splits")
def _():
    rows = WORLD * 2
    inp = on_dev(torch.arange(rows * 3, dtype=torch.float32).reshape(rows, 3) + 100 * RANK)
    out = on_dev(torch.zeros(rows, 3))
    dist.all_to_all_single(out, inp)
    want = torch.cat([(torch.arange(rows * 3, dtype=torch.float32).reshape(rows, 3) + 100 * r)[2 * RANK:2 * RANK + 2]
                      for r in range(WORLD)])
    check("a2a even", out, want)
    # rank r sends (r + p) % 3 + 1 rows to rank p
    send = [(RANK + p) % 3 + 1 for p in range(WORLD)]
    recv = [(p + RANK) % 3 + 1 for p in range(WORLD)]
    inp = on_dev(torch.cat([torch.full((send[p], 2), float(10 * RANK + p)) for p in range(WORLD)]))
    out = on_dev(torch.zeros(sum(recv), 2))
    dist.all_to_all_single(out, inp, output_split_sizes=recv, input_split_sizes=send)
    want = torch.cat([torch.full((recv[p], 2), float(10 * p + RANK)) for p in range(WORLD)])
    check("a2a uneven", out, want)


@case("async_op: Work.wait, is_completed, get_future")
def _():
    t = on_dev(value(RANK, n, torch.float32))
    work = dist.all_reduce(t, async_op=True)
    fut = work.get_future()
    assert work.wait(timedelta(seconds=30))
    assert work.is_completed()
    check("async", t, everyone(n, torch.float32).sum(0))
    res = fut.wait()
    check("future value", res[0], everyone(n, torch.float32).sum(0))
    chained = dist.all_reduce(on_dev(torch.ones(3)), async_op=True).get_future().then(lambda f: f.value()[0] * 2)
    check("future then", chained.wait(), torch.full((3,), 2.0 * WORLD))


@case("isend/irecv and batch_isend_irecv ring (large messages, both directions)")
def _():
    m = 300000  # larger than a shared-memory stream: needs concurrent progress
    nxt, prv = (RANK + 1) % WORLD, (RANK - 1) % WORLD
    a, b = on_dev(torch.zeros(m)), on_dev(torch.zeros(m))
    reqs = dist.batch_isend_irecv([
        dist.P2POp(dist.isend, on_dev(torch.full((m,), float(RANK))), nxt),
        dist.P2POp(dist.isend, on_dev(torch.full((m,), float(RANK + 100))), prv),
        dist.P2POp(dist.irecv, a, prv),
        dist.P2POp(dist.irecv, b, nxt),
    ])
    for r in reqs:
        r.wait()
    check("batch from prev", a, torch.full((m,), float(prv)))
    check("batch from next", b, torch.full((m,), float(nxt + 100)))
    got = on_dev(torch.zeros(4))
    s = dist.isend(on_dev(torch.full((4,), float(RANK))), nxt, tag=7)
    r = dist.irecv(got, prv, tag=7)
    s.wait(); r.wait()
    check("isend/irecv", got, torch.full((4,), float(prv)))


@case("barrier and monitored_barrier")
def _():
    dist.barrier()
    import torch_npu_sim.distributed as npd
    npd.monitored_barrier(timeout=timedelta(seconds=30))


@case("subgroups: new_group of the odd and even ranks")
def _():
    evens = list(range(0, WORLD, 2))
    odds = list(range(1, WORLD, 2))
    g_even = dist.new_group(evens)
    g_odd = dist.new_group(odds)
    mine, members = (g_even, evens) if RANK % 2 == 0 else (g_odd, odds)
    t = on_dev(torch.full((5,), float(RANK)))
    dist.all_reduce(t, group=mine)
    check("subgroup", t, torch.full((5,), float(sum(members))))
    dist.destroy_process_group(g_even)
    dist.destroy_process_group(g_odd)


@case("functional collectives (DTensor / torch.compile path)")
def _():
    import torch.distributed._functional_collectives as fc
    g = dist.group.WORLD
    x = on_dev(value(RANK, 6 * WORLD, torch.float32))
    check("fc all_reduce", fc.all_reduce(x, "sum", g), everyone(6 * WORLD, torch.float32).sum(0))
    check("fc all_gather", fc.all_gather_tensor(x, 0, g), everyone(6 * WORLD, torch.float32).reshape(-1))
    check("fc reduce_scatter", fc.reduce_scatter_tensor(x, "sum", 0, g),
          everyone(6 * WORLD, torch.float32).sum(0)[6 * RANK:6 * RANK + 6])


report(outcomes=outcomes, transport=dist.group.WORLD._get_backend(torch.device("npusim")).transport)
dist.destroy_process_group()
