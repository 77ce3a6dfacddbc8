"""DDP features that lean on more of the backend than plain all_reduce: communication
hooks (fp16 compression: futures and then(); torch allows the bf16 hook on
NCCL/XCCL only), no_sync gradient accumulation,
unused parameters, gradient_as_bucket_view with static_graph, and a parameter broadcast
from rank 0 at construction. Each configuration trains on npusim (both transports) and
on CPU with gloo; losses and final parameters must agree."""
import pytest

from launcher import assert_clean, launch

_gloo_reference = []

DDP = """
import torch_npu_sim  # noqa: F401
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel as DDP
backend, device_type = os.environ["DDP_BACKEND"], os.environ["DDP_DEVICE"]
dist.init_process_group(backend, timeout=timedelta(seconds=60))
device = torch.device(device_type, RANK) if device_type == "npusim" else torch.device("cpu")


class Net(torch.nn.Module):
    def __init__(self, branch):
        super().__init__()
        self.a = torch.nn.Linear(12, 24)
        self.b = torch.nn.Linear(24, 3)
        self.c = torch.nn.Linear(24, 3) if branch else None

    def forward(self, x, use_c=False):
        h = torch.tanh(self.a(x))
        return self.c(h) if use_c else self.b(h)


def train(config):
    torch.manual_seed(1000 + RANK)  # different initial weights per rank: DDP must broadcast rank 0's
    model = Net(branch=config == "unused parameters").to(device)
    kw = dict(bucket_cap_mb=0.0005)
    if config == "unused parameters":
        kw["find_unused_parameters"] = True
    if config == "bucket view + static graph":
        kw.update(gradient_as_bucket_view=True, static_graph=True)
    ddp = DDP(model, **kw)
    if config == "fp16 compress hook":
        ddp.register_comm_hook(dist.group.WORLD, default_hooks.fp16_compress_hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(7 + RANK)
    losses = []
    for step in range(5):
        x = torch.randn(6, 12, generator=gen).to(device)
        y = torch.randn(6, 3, generator=gen).to(device)
        opt.zero_grad()
        if config == "no_sync accumulation":
            with ddp.no_sync():
                torch.nn.functional.mse_loss(ddp(x[:3]), y[:3]).backward()
            loss = torch.nn.functional.mse_loss(ddp(x[3:]), y[3:])
        else:
            # on odd steps only the other head takes part: its parameters get no gradient
            loss = torch.nn.functional.mse_loss(ddp(x, use_c=config == "unused parameters" and step % 2 == 1), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.detach().cpu().reshape(-1).tolist() for p in model.parameters()]


CONFIGS = ["fp16 compress hook", "no_sync accumulation", "unused parameters",
           "bucket view + static graph"]
results = {}
for config in CONFIGS:
    try:
        losses, params = train(config)
        results[config] = {"losses": losses, "params": params}
    except Exception as e:
        results[config] = {"error": f"{type(e).__name__}: {e}"[:1500]}
report(results=results)
dist.destroy_process_group()
"""


@pytest.mark.parametrize("transport", ["shm", "tcp"])
def test_ddp_features_match_gloo(transport):
    import torch

    npusim = launch(DDP, 2, env={"DDP_BACKEND": "npusim", "DDP_DEVICE": "npusim", "NPUSIM_TRANSPORT": transport},
                    timeout=240)
    if not _gloo_reference:  # one reference run serves both transports
        gloo = launch(DDP, 2, env={"DDP_BACKEND": "gloo", "DDP_DEVICE": "cpu"}, timeout=240)
        assert_clean(gloo)
        _gloo_reference.append(gloo)
    gloo = _gloo_reference[0]
    assert_clean(npusim)
    problems = []
    for rank in range(2):
        got, want = npusim[rank].result("results"), gloo[rank].result("results")
        for config, ref in want.items():
            mine = got[config]
            if "error" in ref:
                problems.append(f"rank {rank} {config}: gloo reference failed: {ref['error']}")
                continue
            if "error" in mine:
                problems.append(f"rank {rank} {config}: {mine['error']}")
                continue
            try:
                torch.testing.assert_close(torch.tensor(mine["losses"]), torch.tensor(ref["losses"]),
                                           rtol=1e-5, atol=1e-6)
                for a, b in zip(mine["params"], ref["params"]):
                    torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-5, atol=1e-6)
            except AssertionError as e:
                problems.append(f"rank {rank} {config}: {e}")
    # replicas identical across ranks, in every configuration
    for config, r0 in npusim[0].result("results").items():
        r1 = npusim[1].result("results")[config]
        if "params" in r0 and "params" in r1 and r0["params"] != r1["params"]:
            problems.append(f"{config}: npusim replicas differ between ranks")
    assert not problems, "\n".join(problems) + "\n" + "\n".join(o.stderr[-2000:] for o in npusim)
