"""init_process_group() with no backend on an npusim machine: the group's collectives run
on npusim and DDP works on it (torch alone would mark gloo, absent from the group, as the
default backend)."""
import torch

from launcher import assert_clean, describe, launch

BARE_INIT_DDP = """
dist.init_process_group(timeout=timedelta(seconds=60))
dev = torch.device("npusim", RANK)
pg = dist.group.WORLD
report(backend_of_npusim=str(pg._get_backend(dev).__class__.__name__), name=pg.name())
torch.manual_seed(0)
model = torch.nn.Linear(4, 2).to(dev)
ddp = torch.nn.parallel.DistributedDataParallel(model)
x = torch.full((3, 4), float(RANK + 1), device=dev)
ddp(x).sum().backward()
report(grad=model.weight.grad.cpu().tolist())
c = torch.ones(2)
dist.all_reduce(c)  # CPU tensors too
report(cpu=c.tolist())
sub = dist.new_group([0, 1])
t = torch.ones(2, device=dev)
dist.all_reduce(t, group=sub)
report(sub=t.cpu().tolist())
dist.destroy_process_group()
"""


def test_bare_init_process_group_then_ddp():
    outcomes = launch(BARE_INIT_DDP, 2, timeout=120)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("backend_of_npusim") == "ProcessGroupNpuSim", describe(outcomes)
        # creating groups is quiet: no store warnings on stderr
        assert "waitForInput" not in o.stderr and "[W" not in o.stderr, o.stderr[-2000:]
        assert o.result("sub") == [2.0, 2.0]
        assert o.result("cpu") == [2.0, 2.0]
    # DDP averaged the gradients: both ranks hold the mean of x's rows (1 and 2) per weight
    for o in outcomes:
        torch.testing.assert_close(torch.tensor(o.result("grad")), torch.full((2, 4), 4.5))


def test_the_fix_up_is_active_on_this_torch():
    """Fails loudly when torch changes under the private function it wraps."""
    import torch.distributed.distributed_c10d as c10d

    from torch_npu_sim.distributed import _default_backend

    assert _default_backend._torch_version() in _default_backend.PATCHED_TORCH_VERSIONS, (
        f"torch {torch.__version__}: re-check init_process_group() without a backend + DDP, then extend "
        "PATCHED_TORCH_VERSIONS")
    assert getattr(c10d._new_process_group_helper, "_npusim_default_backend", False)
