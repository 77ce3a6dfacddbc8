"""Protected device memory (NPUSIM_PROTECT_MEMORY=1): device memory is inaccessible to
host code outside kernel launches and runtime copies; a direct host access is reported
(address, allocation, backtrace) and ends the process, while everything that goes through
launches works as usual. Runs in child processes: the mode is read once per process."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "distributed"))
from launcher import assert_clean, describe, launch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTECTED = dict(os.environ, NPUSIM_PROTECT_MEMORY="1")


def _run(code: str, env=PROTECTED, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)


def test_a_host_read_of_device_memory_is_reported_and_ends_the_process():
    r = _run("import ctypes, torch\n"
             "x = torch.ones(100, device='npusim')\n"
             "print('before', flush=True)\n"
             "print(ctypes.c_float.from_address(x.data_ptr()).value, flush=True)\n"
             "print('after', flush=True)\n")
    assert "before" in r.stdout and "after" not in r.stdout
    assert r.returncode != 0
    assert "host code accessed npusim device memory at 0x" in r.stderr, r.stderr
    assert "(npusim:0 allocation of " in r.stderr and "outside a kernel launch or runtime copy" in r.stderr
    assert "native backtrace" in r.stderr


def test_without_the_mode_the_same_read_works():
    env = {k: v for k, v in os.environ.items() if k != "NPUSIM_PROTECT_MEMORY"}
    r = _run("import ctypes, torch, torch_npu_sim.sanitizer as s\n"
             "x = torch.ones(100, device='npusim')\n"
             "print(ctypes.c_float.from_address(x.data_ptr()).value, s.protected_memory(), s.device_access_openings())\n",
             env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1.0", "False", "0"]


def test_ops_copies_printing_and_training_work_in_the_mode():
    r = _run("import torch, torch_npu_sim.sanitizer as s\n"
             "torch.manual_seed(0)\n"
             "x = torch.randn(64, 64, device='npusim')\n"
             "ref = x.cpu()\n"
             "assert torch.equal((x @ x + 1).cpu(), ref @ ref + 1)\n"
             "assert (x.sum() - ref.sum()).abs().item() < 1e-3\n"
             "text = repr(x[:2, :2])\n"
             "m = torch.nn.Linear(64, 8).npusim(); opt = torch.optim.Adam(m.parameters())\n"
             "for _ in range(2):\n"
             "    opt.zero_grad(); m(x).square().mean().backward(); opt.step()\n"
             "pinned = torch.empty(64, 64).pin_memory(); pinned.copy_(x, non_blocking=True); torch.npusim.synchronize()\n"
             "assert torch.equal(pinned, ref)\n"
             "print('ok', s.protected_memory(), s.device_access_openings() > 0, 'npusim' in text)\n")
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.split() == ["ok", "True", "True", "True"]


_COLLECTIVES = '''
dist.init_process_group("npusim", rank=RANK, world_size=WORLD)
torch.npusim.set_device(RANK)
t = torch.full((1000,), float(RANK + 1), device="npusim")
dist.all_reduce(t)
out = torch.empty(2000, device="npusim")
dist.all_gather_into_tensor(out, torch.full((1000,), float(RANK), device="npusim"))
if RANK == 0:
    dist.send(torch.arange(10.0, device="npusim"), 1)
    got = 45.0
else:
    r = torch.empty(10, device="npusim"); dist.recv(r, 0); got = r.sum().item()
import torch_npu_sim.sanitizer as s
from torch.nn.parallel import DistributedDataParallel as DDP
torch.manual_seed(0)
ddp = DDP(torch.nn.Linear(8, 4).npusim())
opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
for _ in range(2):
    opt.zero_grad(); ddp(torch.randn(4, 8, device="npusim") + RANK).sum().backward(); opt.step()
report(sum=t[0].item(), gathered=out.sum().item(), got=got, protected=s.protected_memory(),
       ddp=ddp.module.weight.sum().item())
dist.destroy_process_group()
'''


def test_collectives_and_ddp_work_in_the_mode():
    outcomes = launch(_COLLECTIVES, world=2, env={"NPUSIM_PROTECT_MEMORY": "1"}, timeout=180)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("sum") == 3.0 and o.result("gathered") == 1000.0 and o.result("got") == 45.0, describe(outcomes)
        assert o.result("protected") is True
    assert outcomes[0].result("ddp") == outcomes[1].result("ddp"), describe(outcomes)


# What CI runs in the mode: the device layer, pointwise ops, compiled graphs (C++ kernels
# called through a device-access scope); DDP runs in the test above. The Inductor FX-graph cache is off so
# that wrapper code generated before npusim_kernel_call existed is never reused.
PROTECTED_SUBSET = [
    "tests/device/test_device.py", "tests/device/test_tensors.py", "tests/device/test_memory.py",
    "tests/device/test_streams.py", "tests/device/test_host_memory.py", "tests/device/test_large_copies.py",
    "tests/device/test_module_to.py", "tests/device/test_rng.py",
    "tests/ops/test_pointwise.py", "tests/compile/test_compile.py",
]


def test_a_subset_of_the_suite_passes_in_the_mode():
    env = dict(PROTECTED, TORCHINDUCTOR_FX_GRAPH_CACHE="0")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PROTECTED_SUBSET],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert " passed" in r.stdout and "host code accessed npusim device memory" not in r.stderr
