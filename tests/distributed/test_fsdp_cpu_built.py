"""FSDP on a model built on the CPU: fully_shard (FSDP2) and FSDP1's device_id= move the
CPU parameters onto npusim themselves (Module.to / param.data), and training then gives
gloo/CPU's losses. CPUOffloadPolicy keeps sharded parameters on the CPU and computes on
npusim."""
import pytest

from launcher import assert_clean, describe, launch

FSDP = """
from torch.distributed.device_mesh import init_device_mesh
mode, device_type = os.environ["FSDP_MODE"], os.environ["FSDP_DEVICE"]
backend = "npusim" if device_type == "npusim" else "gloo"
dist.init_process_group(backend, timeout=timedelta(seconds=60))
device = torch.device(device_type, RANK) if device_type == "npusim" else torch.device("cpu")
if device_type == "npusim":
    torch.npusim.set_device(device)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
                            torch.nn.Linear(32, 4))  # built on the CPU
if mode.startswith("fsdp2"):
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard
    mesh = init_device_mesh(device_type, (WORLD,))
    kw = {"offload_policy": CPUOffloadPolicy(pin_memory=False)} if mode == "fsdp2_offload" else {}
    for layer in (model[0], model[2]):
        fully_shard(layer, mesh=mesh, **kw)
    fully_shard(model, mesh=mesh, **kw)
    param_devices = sorted({p.device.type for p in model.parameters()})
else:
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP1
    model = FSDP1(model, device_id=device if device_type == "npusim" else None, use_orig_params=True)
    param_devices = sorted({p.device.type for p in model.parameters()})
opt = torch.optim.Adam(model.parameters(), lr=0.01)
gen = torch.Generator().manual_seed(100 + RANK)
x = torch.randn(8, 16, generator=gen).to(device)
y = torch.randn(8, 4, generator=gen).to(device)
losses = []
for step in range(6):
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
report(losses=losses, param_devices=param_devices)
dist.destroy_process_group()
"""


@pytest.mark.parametrize("mode,expected_param_device", [("fsdp2", "npusim"), ("fsdp2_offload", "cpu"),
                                                        ("fsdp1", "npusim")])
def test_fsdp_on_a_cpu_built_model_matches_gloo(mode, expected_param_device):
    npusim = launch(FSDP, 2, env={"FSDP_MODE": mode, "FSDP_DEVICE": "npusim"}, timeout=240)
    # the reference runs without the plugin on CPU tensors; FSDP1 refuses the CPU, so its
    # reference is FSDP2 on gloo (the same sharded math: Adam is elementwise)
    reference_mode = "fsdp2" if mode == "fsdp1" else mode
    gloo = launch(FSDP, 2, env={"FSDP_MODE": reference_mode, "FSDP_DEVICE": "cpu", "TORCH_DEVICE_BACKEND_AUTOLOAD": "0"},
                  timeout=240)
    assert_clean(npusim)
    assert_clean(gloo)
    import torch

    for rank in range(2):
        assert npusim[rank].result("param_devices") == [expected_param_device], describe(npusim)
        got, want = npusim[rank].result("losses"), gloo[rank].result("losses")
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-5, atol=1e-6)
        assert got[-1] < got[0], f"the model did not train: {got}"
