"""Ways to create npusim process groups, and clear errors for bad use."""
import pytest

from launcher import assert_clean, describe, launch

INIT_VARIANTS = """
import torch_npu_sim  # noqa: F401
variant = os.environ["VARIANT"]
dev = torch.device("npusim", RANK)
if variant == "no backend":
    dist.init_process_group()
elif variant == "device_id":
    dist.init_process_group("npusim", device_id=dev)
elif variant == "per device":
    dist.init_process_group("cpu:gloo,npusim:npusim")
elif variant == "store":
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), WORLD, RANK == 0)
    dist.init_process_group("npusim", store=store, rank=RANK, world_size=WORLD)
pg = dist.group.WORLD
t = torch.full((3,), float(RANK + 1), device=dev)
dist.all_reduce(t)
c = torch.full((3,), float(RANK + 1))
if variant != "no backend":  # torch then maps the accelerator only (as it does for cuda/nccl)
    dist.all_reduce(c)
    report(cpu=c.tolist(), cpu_backend=type(pg._get_backend(torch.device("cpu"))).__name__)
report(backend=str(dist.get_backend()), npusim=t.tolist(), npusim_backend=type(pg._get_backend(dev)).__name__)
dist.destroy_process_group()
# a second group in the same processes, after destroy
if variant == "store":
    dist.init_process_group("npusim", store=store, rank=RANK, world_size=WORLD)
else:
    dist.init_process_group("npusim")
t = torch.ones(2, device=dev)
dist.all_reduce(t)
report(second=t.tolist())
dist.destroy_process_group()
"""


@pytest.mark.parametrize("variant", ["no backend", "device_id", "per device", "store"])
def test_init_variants(variant):
    outcomes = launch(INIT_VARIANTS, 2, env={"VARIANT": variant}, timeout=120)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("npusim") == [3.0] * 3
        assert o.result("second") == [2.0] * 2
        assert o.result("npusim_backend") == "ProcessGroupNpuSim"
        if variant != "no backend":
            assert o.result("cpu") == [3.0] * 3
            expected_cpu = "ProcessGroupGloo" if variant == "per device" else "ProcessGroupNpuSim"
            assert o.result("cpu_backend") == expected_cpu, describe(outcomes)


def test_backend_is_registered(fresh_python):
    r = fresh_python("""
        import torch, torch.distributed as dist
        print("npusim" in dist.Backend.backend_list, dist.Backend.default_device_backend_map.get("npusim"),
              dist.is_backend_available("npusim"))
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "npusim", "True"]


BAD_USE = """
import torch_npu_sim  # noqa: F401
dist.init_process_group("npusim", timeout=timedelta(seconds=30))
dev = torch.device("npusim", RANK)
errors = {}
def expect(name, fn):
    try:
        fn()
        errors[name] = "no error"
    except Exception as e:
        errors[name] = f"{type(e).__name__}: {e}"
expect("bitwise on float", lambda: dist.all_reduce(torch.ones(3, device=dev), op=dist.ReduceOp.BAND))
expect("premul on int", lambda: dist.all_reduce(torch.ones(3, device=dev, dtype=torch.int32), op=dist._make_nccl_premul_sum(2.0)))
expect("recv from out of range", lambda: dist.group.WORLD.recv([torch.zeros(3, device=dev)], 5, 0))
expect("send to self", lambda: dist.group.WORLD.send([torch.zeros(3, device=dev)], RANK, 0))
expect("wrong output size", lambda: dist.all_gather_into_tensor(torch.zeros(5, device=dev), torch.ones(3, device=dev)))
expect("sparse max", lambda: dist.all_reduce(torch.ones(3).to_sparse(), op=dist.ReduceOp.MAX))
def bad_root():
    opts = dist.BroadcastOptions()
    opts.rootRank = 7
    dist.group.WORLD.broadcast([torch.ones(3, device=dev)], opts)
expect("root out of range", bad_root)
# nothing was sent: the group still works
t = torch.ones(3, device=dev)
dist.all_reduce(t)
report(errors=errors, after=t.tolist())
dist.destroy_process_group()
"""


def test_bad_input_is_a_clear_error_and_loses_nothing():
    outcomes = launch(BAD_USE, 2, timeout=120)
    assert_clean(outcomes)
    for o in outcomes:
        errors = o.result("errors")
        assert "only defined for integer and bool" in errors["bitwise on float"], errors
        assert "PREMUL_SUM is only defined for floating-point" in errors["premul on int"], errors
        assert "out of range" in errors["recv from out of range"], errors
        assert "cannot send to" in errors["send to self"], errors
        assert "needs 6" in errors["wrong output size"], errors
        assert "sparse all_reduce supports SUM only" in errors["sparse max"], errors
        assert "out of range" in errors["root out of range"], errors
        assert o.result("after") == [2.0] * 3
