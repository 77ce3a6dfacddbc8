"""DDP on npusim with the npusim backend trains exactly like DDP on CPU with gloo."""
from launcher import assert_clean, describe, launch

DDP = """
import torch_npu_sim  # noqa: F401
backend, device_type = os.environ["DDP_BACKEND"], os.environ["DDP_DEVICE"]
dist.init_process_group(backend, timeout=timedelta(seconds=60))
device = torch.device(device_type, RANK) if device_type == "npusim" else torch.device("cpu")
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4)).to(device)
ddp = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.001)  # several buckets
opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
gen = torch.Generator().manual_seed(100 + RANK)  # each rank its own data shard
x = torch.randn(8, 16, generator=gen).to(device)
y = torch.randn(8, 4, generator=gen).to(device)
losses = []
for step in range(8):
    loss = torch.nn.functional.mse_loss(ddp(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
params = [p.detach().cpu().reshape(-1).tolist() for p in model.parameters()]
report(losses=losses, params=params)
dist.destroy_process_group()
"""


def test_ddp_npusim_matches_ddp_cpu_gloo():
    npusim = launch(DDP, 2, env={"DDP_BACKEND": "npusim", "DDP_DEVICE": "npusim"}, timeout=180)
    gloo = launch(DDP, 2, env={"DDP_BACKEND": "gloo", "DDP_DEVICE": "cpu"}, timeout=180)
    assert_clean(npusim)
    assert_clean(gloo)
    import torch

    for rank in range(2):
        got, want = npusim[rank].result("losses"), gloo[rank].result("losses")
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-5, atol=1e-6)
        assert got[-1] < got[0], f"the model did not train: {got}"
    # replicas stay identical across ranks
    for a, b in zip(npusim[0].result("params"), npusim[1].result("params")):
        assert a == b, describe(npusim)
