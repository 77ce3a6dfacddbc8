"""Random programs, captured and replayed, against eager npusim (the oracle): shapes,
dtypes, non-contiguous inputs, in-place updates of inputs and temporaries, views, reductions,
matmuls, random ops and temporaries freed inside the capture (pool reuse). Replay runs the
same CPU kernels as eager, so results must match bit for bit."""
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

DEV = "npusim"

UNARY = {
    "neg": torch.neg, "abs": torch.abs, "relu": torch.relu, "tanh": torch.tanh, "exp": lambda a: torch.exp(a.clamp(max=10)),
    "sigmoid": torch.sigmoid, "softmax": lambda a: torch.softmax(a, dim=-1), "cumsum": lambda a: torch.cumsum(a, dim=0),
    "transpose_copy": lambda a: a.t().contiguous().t(), "strided_view_sum": lambda a: a[:, ::2].sum(dim=1, keepdim=True) + a,
    "scale": lambda a: a * 0.5 + 1, "to_double_and_back": lambda a: a.double().mul(3).to(a.dtype),
    "mean_keep": lambda a: a - a.mean(dim=-1, keepdim=True),
    # 0-dim results with Python numbers: promotion rules of wrapped numbers on replay
    "scalar_chain": lambda a: (0.1 / (a.sum().abs() + 0.3) - 0.7 * a.amax()) * a,
}
BINARY = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": lambda a, b: a / (b.abs() + 1),
    "maximum": torch.maximum, "where": lambda a, b: torch.where(a > b, a, b), "matmul_t": lambda a, b: (a @ b.t()) @ a,
    "cat_sum": lambda a, b: torch.cat([a, b], dim=0).view(2, *a.shape).sum(0),
}
INPLACE = {
    "add_": lambda a, b: a.add_(b), "mul_": lambda a, b: a.mul_(0.9), "clamp_": lambda a, b: a.clamp_(-2, 2),
    "copy_": lambda a, b: a.copy_(b), "index_add_": lambda a, b: a.index_add_(0, torch.zeros(1, dtype=torch.long, device=DEV), b[:1].clone()),
}
RANDOM = {"dropout": lambda a: torch.nn.functional.dropout(a, 0.3), "rand_like": lambda a: a + torch.rand_like(a)}

op_names = st.sampled_from(sorted(UNARY) + sorted(BINARY) + sorted(INPLACE) + sorted(RANDOM) + ["free"])
step = st.tuples(op_names, st.integers(0, 1000), st.integers(0, 1000))


def run(program, inputs):
    """Runs the program; values live in `values`, 'free' drops one (its memory is reused)."""
    values = list(inputs)
    for name, i, j in program:
        a, b = values[i % len(values)], values[j % len(values)]
        if name == "free":
            if len(values) > len(inputs):
                values.pop(len(inputs) + i % (len(values) - len(inputs)))
        elif name in UNARY:
            values.append(UNARY[name](a))
        elif name in BINARY:
            values.append(BINARY[name](a, b))
        elif name in RANDOM:
            values.append(RANDOM[name](a))
        else:
            INPLACE[name](a, b)
    return values


def make_inputs(shape, dtype, layout, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(3):
        base = torch.randn(shape[1] * 2 if layout == "strided" else shape[1], shape[0], generator=g)
        t = base.t()  # non-contiguous
        if layout == "strided":
            t = t[:, ::2]
        elif layout == "contiguous":
            t = t.contiguous()
        out.append(t.to(dtype).to(DEV) if layout == "contiguous" else _to_device_keep_strides(t.to(dtype)))
    return out


def _to_device_keep_strides(t):
    d = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=DEV) if t.is_contiguous() else None
    if d is None:  # a strided view of a larger device tensor, like the CPU one
        base = torch.empty(t.untyped_storage().nbytes() // t.element_size(), dtype=t.dtype, device=DEV)
        d = base.as_strided(t.shape, t.stride(), t.storage_offset())
    d.copy_(t)
    return d


def same(x, y):
    return x.shape == y.shape and x.dtype == y.dtype and torch.equal(
        torch.nan_to_num(x.cpu().double(), 7.0, 8.0, 9.0), torch.nan_to_num(y.cpu().double(), 7.0, 8.0, 9.0))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=st.lists(step, min_size=1, max_size=10),
       shape=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float64]),
       layout=st.sampled_from(["contiguous", "transposed", "strided"]),
       seed=st.integers(0, 2**16), rng_seed=st.integers(0, 2**16))
def test_replay_equals_eager(program, shape, dtype, layout, seed, rng_seed):
    static = make_inputs(shape, dtype, layout, seed)
    g = torch.npusim.NPUGraph()
    with torch.npusim.graph(g):
        static_values = run(program, static)
    for replay in range(2):
        fresh = make_inputs(shape, dtype, layout, seed + 1 + replay)
        for s, f in zip(static, fresh):
            s.copy_(f)
        torch.npusim.manual_seed(rng_seed + replay)
        g.replay()
        torch.npusim.manual_seed(rng_seed + replay)
        eager_values = run(program, fresh)
        assert len(eager_values) == len(static_values)
        for k, (x, y) in enumerate(zip(static_values, eager_values)):
            assert same(x, y), (replay, k, program)
    g.reset()
