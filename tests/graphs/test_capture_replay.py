"""Graph capture and replay on npusim: CUDA graphs' semantics, checked against eager npusim
execution bit for bit (the same kernels run either way, so results must be identical)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

DEV = "npusim"


def capture(fn, *, pool=None, mode="global"):
    g = torch.npusim.NPUGraph()
    with torch.npusim.graph(g, pool=pool, capture_error_mode=mode):
        out = fn()
    return g, out


def test_work_is_recorded_not_run():
    x = torch.zeros(8, device=DEV)
    g, _ = capture(lambda: x.add_(1))
    assert torch.equal(x.cpu(), torch.zeros(8)), "capture ran the kernel"
    g.replay()
    g.replay()
    assert torch.equal(x.cpu(), torch.full((8,), 2.0))


def test_torch_accelerator_graph_is_npusim_graph():
    x = torch.zeros(4, device=DEV)
    s = torch.npusim.Stream()
    g = torch.accelerator.Graph()
    with torch.npusim.stream(s), g:
        x.mul_(3).add_(1)
    g.replay()
    assert torch.equal(x.cpu(), torch.ones(4))
    assert g.pool()[1] > 0


def test_static_inputs_and_outputs_follow_new_data():
    static_in = torch.randn(16, 32, device=DEV)
    w = torch.randn(32, 8, device=DEV)
    g, static_out = capture(lambda: torch.relu(static_in @ w + 1).sum(dim=0) * 0.5)
    for _ in range(3):
        new = torch.randn(16, 32, device=DEV)
        static_in.copy_(new)
        g.replay()
        assert torch.equal(static_out.cpu(), (torch.relu(new @ w + 1).sum(dim=0) * 0.5).cpu())


class Block(nn.Module):
    """A pre-norm transformer block (attention + MLP), as in small decoders."""

    def __init__(self, d=64, heads=4):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(a)
        return x + self.down(F.gelu(self.up(self.norm2(x))))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_transformer_block_forward_equals_eager(dtype):
    torch.manual_seed(0)
    block = Block().to(DEV, dtype)
    static_x = torch.randn(2, 16, 64, device=DEV, dtype=dtype)
    with torch.no_grad():
        g, static_y = capture(lambda: block(static_x))
        for _ in range(3):
            x = torch.randn(2, 16, 64, device=DEV, dtype=dtype)
            static_x.copy_(x)
            g.replay()
            assert torch.equal(static_y.cpu(), block(x).cpu())


OPTIMIZERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.1, foreach=True),
    # capturable: the step count stays on the device (its bias corrections once drifted from
    # eager's, by a Python scalar that lost its promotion rule on replay)
    "adam": lambda params: torch.optim.Adam(params, lr=1e-2, capturable=True, foreach=True),
    "adam-single-tensor": lambda params: torch.optim.Adam(params, lr=1e-2, capturable=True, foreach=False),
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_training_step_equals_eager_steps(optimizer):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).to(DEV)
    eager = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).to(DEV)
    eager.load_state_dict(model.state_dict())
    opt, eager_opt = OPTIMIZERS[optimizer](model.parameters()), OPTIMIZERS[optimizer](eager.parameters())
    static_x, static_t = torch.randn(8, 16, device=DEV), torch.randn(8, 4, device=DEV)
    for m, o in ((model, opt), (eager, eager_opt)):  # warm-up: optimizer state exists before capture
        F.mse_loss(m(static_x), static_t).backward()
        o.step()

    opt.zero_grad(set_to_none=True)
    g = torch.npusim.NPUGraph()
    with torch.npusim.graph(g):
        static_loss = F.mse_loss(model(static_x), static_t)
        static_loss.backward()
        opt.step()

    for step in range(8):
        x, t = torch.randn(8, 16, device=DEV), torch.randn(8, 4, device=DEV)
        static_x.copy_(x)
        static_t.copy_(t)
        g.replay()
        eager_opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(eager(x), t)
        loss.backward()
        eager_opt.step()
        assert torch.equal(static_loss.cpu(), loss.detach().cpu()), step
        for p, q in zip(model.parameters(), eager.parameters()):
            assert torch.equal(p.detach().cpu(), q.detach().cpu()), step


def test_replays_draw_fresh_reproducible_random_numbers():
    x = torch.ones(1000, device=DEV)
    torch.npusim.manual_seed(0)
    g, out = capture(lambda: F.dropout(x, 0.5) + torch.rand(1000, device=DEV))
    torch.npusim.manual_seed(123)
    g.replay()
    first = out.cpu().clone()
    g.replay()
    second = out.cpu().clone()
    assert not torch.equal(first, second), "a replay reused the previous replay's random numbers"
    torch.npusim.manual_seed(123)  # eager draws the same numbers as the replays, in order
    assert torch.equal((F.dropout(x, 0.5) + torch.rand(1000, device=DEV)).cpu(), first)
    assert torch.equal((F.dropout(x, 0.5) + torch.rand(1000, device=DEV)).cpu(), second)


def test_capture_joins_other_streams_through_events():
    x = torch.arange(6, dtype=torch.float32, device=DEV)
    side = torch.npusim.Stream()

    def work():
        here = torch.npusim.current_stream()
        side.wait_stream(here)  # the side stream joins the capture
        with torch.npusim.stream(side):
            y = x * 2
        here.wait_stream(side)  # ... and is joined back
        return y + 1

    g, out = capture(work)
    x.copy_(torch.ones(6, device=DEV))
    g.replay()
    assert torch.equal(out.cpu(), torch.full((6,), 3.0))


def test_unjoined_stream_work_is_an_error():
    x = torch.ones(4, device=DEV)
    side = torch.npusim.Stream()
    g = torch.npusim.NPUGraph()
    s = torch.npusim.Stream()
    with torch.npusim.stream(s):
        g.capture_begin()
        side.wait_stream(s)
        with torch.npusim.stream(side):
            x.mul_(2)
        with pytest.raises(RuntimeError, match="never waited for"):
            g.capture_end()
    assert not torch.npusim.is_current_stream_capturing()


@pytest.mark.parametrize("what, call, match", [
    ("item", lambda x: x.sum().item(), "not permitted while"),
    ("synchronize", lambda x: torch.npusim.synchronize(), "not permitted while"),
    ("stream sync", lambda x: torch.npusim.current_stream().synchronize(), "not permitted while"),
    ("cpu", lambda x: x.cpu(), "copy to host memory"),
    ("pageable h2d", lambda x: x.copy_(torch.ones(4)), "pageable host memory"),
    ("nonzero", lambda x: torch.nonzero(x), "aten::nonzero cannot be captured"),
    ("cpu argument", lambda x: x[torch.tensor([0, 1])], "pageable host memory"),
])
def test_uncapturable_calls_raise_and_leave_the_stream_usable(what, call, match):
    x = torch.ones(4, device=DEV)
    g = torch.npusim.NPUGraph()
    with pytest.raises(RuntimeError, match=match):
        with torch.npusim.graph(g):
            call(x)
    assert not torch.npusim.is_current_stream_capturing()
    assert torch.equal((x + 1).cpu(), torch.full((4,), 2.0))  # eager work runs again


def test_pinned_host_to_device_copy_is_captured():
    pinned = torch.zeros(4).pin_memory()
    dst = torch.empty(4, device=DEV)
    g, _ = capture(lambda: dst.copy_(pinned, non_blocking=True))
    pinned.copy_(torch.arange(4.0))  # replay reads the pinned buffer as it is then
    g.replay()
    assert torch.equal(dst.cpu(), torch.arange(4.0))


def test_default_stream_capture_is_refused():
    g = torch.npusim.NPUGraph()
    with pytest.raises(RuntimeError, match="default stream"):
        g.capture_begin()


def test_relaxed_mode_lets_other_threads_synchronize():
    import threading

    x = torch.ones(4, device=DEV)
    errors = []
    for mode, expect_error in (("global", True), ("relaxed", False)):
        g = torch.npusim.NPUGraph()
        with torch.npusim.graph(g, capture_error_mode=mode):
            x.add_(1)
            t = threading.Thread(target=lambda: errors.append(_sync_error()))
            t.start()
            t.join()
        assert (errors[-1] is not None) == expect_error, (mode, errors[-1])


def _sync_error():
    try:
        torch.npusim.synchronize()
    except RuntimeError as e:
        return e
    return None


def test_pool_memory_stays_reserved_until_reset():
    torch.npusim.empty_cache()
    x = torch.randn(256, 256, device=DEV)
    g, out = capture(lambda: (x @ x).relu() + 1)  # a temporary freed inside the capture
    pool = g.pool()
    reserved = torch.npusim.graphs.pool_reserved_bytes(pool)
    assert reserved >= 2 * 256 * 256 * 4
    torch.npusim.empty_cache()
    assert torch.npusim.graphs.pool_reserved_bytes(pool) == reserved  # replays write there
    g.replay()
    assert torch.equal(out.cpu(), ((x @ x).relu() + 1).cpu())
    before = torch.npusim.memory_reserved()
    del out
    g.reset()
    torch.npusim.empty_cache()
    assert torch.npusim.graphs.pool_reserved_bytes(pool) == 0
    assert torch.npusim.memory_reserved() < before


def test_graphs_share_a_pool():
    x = torch.randn(64, device=DEV)
    pool = torch.npusim.graph_pool_handle()
    g1, a = capture(lambda: x * 2, pool=pool)
    g2, b = capture(lambda: a + 1, pool=pool)
    assert g1.pool() == g2.pool() == pool
    x.copy_(torch.ones(64, device=DEV))
    g1.replay()
    g2.replay()
    assert torch.equal(b.cpu(), torch.full((64,), 3.0))


def test_replay_is_one_launch_charged_once_for_latency():
    from torch_npu_sim import simulation as sim

    x = torch.randn(32, 32, device=DEV)
    sim.enable()
    try:
        g, out = capture(lambda: ((x @ x) + x).tanh() * 2)  # four kernels
        s = torch.npusim.current_stream()
        before = torch.npusim.launch_count()
        sim.reset()
        g.replay()
        assert torch.npusim.launch_count() - before == 1
        replay_ns = sim.sim_time_ns(s)
        sim.reset()
        ((x @ x) + x).tanh() * 2
        eager_ns = sim.sim_time_ns(s)
        names = [op.name for op in sim.breakdown()]
    finally:
        sim.disable()
    latency = sim.get_chip().launch_latency_s * 1e9
    assert replay_ns == pytest.approx(eager_ns - 3 * latency, rel=0.05), (replay_ns, eager_ns, latency)


def test_keep_graph_debug_dump_and_recapture(tmp_path):
    x = torch.ones(4, device=DEV)
    g = torch.npusim.NPUGraph(keep_graph=True)
    g.enable_debug_mode()
    with torch.npusim.graph(g):
        x.mul_(2).add_(1)
    g.replay()  # instantiates on first replay
    path = tmp_path / "graph.dot"
    g.debug_dump(str(path))
    text = path.read_text()
    assert "aten::mul_" in text and "aten::add_" in text and "n0 -> n1" in text
    with pytest.raises(RuntimeError, match="already captured"):
        g.capture_begin()
    g.reset()
    with torch.npusim.graph(g):
        x.sub_(1)
    g.replay()
    assert torch.equal(x.cpu(), torch.full((4,), 2.0))  # (1*2+1) - 1


def test_replay_without_capture_is_an_error():
    with pytest.raises(RuntimeError, match="needs a captured graph"):
        torch.npusim.NPUGraph().replay()


def test_profiler_shows_each_replay_as_one_kernel():
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(64, 64, device=DEV)
    g, out = capture(lambda: (x @ x).relu() @ x)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.PrivateUse1]) as prof:
        for _ in range(3):
            g.replay()
        torch.npusim.synchronize()
    kernels = {e.key: e for e in prof.key_averages() if e.device_type == DeviceType.PrivateUse1}
    assert "npusim::graph_replay" in kernels, list(kernels)
    assert kernels["npusim::graph_replay"].count == 3
    assert "aten::mm" not in kernels  # replay launches no kernel of its own


def test_collectives_are_recorded(fresh_python):
    """A collective issued while capturing runs at each replay, not at capture (here on a
    one-rank group; tests/distributed/test_graph_collectives.py runs real ranks)."""
    result = fresh_python("""
        import torch, torch.distributed as dist
        dist.init_process_group("npusim", store=dist.HashStore(), rank=0, world_size=1)
        x = torch.ones(4, device="npusim")
        g = torch.npusim.NPUGraph()
        with torch.npusim.graph(g):
            y = x * 2
            dist.all_reduce(y, op=dist.ReduceOp.MAX)
            z = y + 1
        print("captured:", x.tolist())
        x.fill_(5)
        g.replay()
        print("replayed:", z.tolist())
        dist.destroy_process_group()
    """, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "captured: [1.0, 1.0, 1.0, 1.0]" in result.stdout, result.stdout
    assert "replayed: [11.0, 11.0, 11.0, 11.0]" in result.stdout, result.stdout


def test_inductor_kernels_are_recorded_and_replayed():
    """Inductor's C++ kernels read npusim memory through raw pointers: during capture each call
    is recorded (not run) and every replay calls it again on the graph's buffers."""
    fn = torch.compile(lambda a, b: ((a * 2).sin() + b).relu() @ b.t(), backend="inductor")
    x, w = torch.randn(8, 8, device=DEV), torch.randn(8, 8, device=DEV)
    fn(x, w)  # compiled outside the capture
    g = torch.npusim.NPUGraph()
    with torch.npusim.graph(g):
        out = fn(x, w)
    stale = out.cpu().clone()
    for _ in range(2):
        x.copy_(torch.randn(8, 8, device=DEV))
        g.replay()
        assert torch.equal(out.cpu(), fn(x, w).cpu())
    assert not torch.equal(out.cpu(), stale)


def test_optimizer_step_capture_needs_capturable():
    model = nn.Linear(4, 4).to(DEV)
    for capturable, raises in ((False, True), (True, False)):
        opt = torch.optim.Adam(model.parameters(), lr=0.1, capturable=capturable)
        model(torch.ones(2, 4, device=DEV)).sum().backward()
        opt.step()  # warm-up: state on the device
        g = torch.npusim.NPUGraph()
        try:
            with torch.npusim.graph(g):
                opt.step()
        except RuntimeError as e:
            assert raises and "capturable is False" in str(e), e
        else:
            assert not raises, "a capture of Adam(capturable=False).step() was accepted"


def test_python_scalars_keep_their_promotion_rules_on_replay():
    # `lr / t` is t.reciprocal() * lr: lr becomes a wrapped 0-dim double, which must not promote
    # the float32 product to double on replay (capturable Adam's step size drifted from eager)
    t = torch.tensor(1.0, device=DEV)
    g, out = capture(lambda: (0.01 / (1 - 0.9 ** t), 3.0 * t - 0.1))
    for value in (2.0, 5.0, 7.0, 11.0):
        t.fill_(value)
        g.replay()
        expected = (0.01 / (1 - 0.9 ** t), 3.0 * t - 0.1)
        assert all(torch.equal(a.cpu(), b.cpu()) for a, b in zip(out, expected)), value
