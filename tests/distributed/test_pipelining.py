"""torch.distributed.pipelining on npusim: the GPipe and 1F1B schedules on 2 ranks (one
stage each, 4 microbatches) give the losses and gradients of the same schedules on
gloo/CPU, over two optimizer steps each."""

from launcher import assert_clean, describe, launch

PIPELINE = """
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe
device_type = os.environ["PP_DEVICE"]
dist.init_process_group("npusim" if device_type == "npusim" else "gloo", timeout=timedelta(seconds=60))
device = torch.device(device_type, RANK) if device_type == "npusim" else torch.device("cpu")
if device_type == "npusim":
    torch.npusim.set_device(device)
results = {}
for name, schedule_class in (("gpipe", ScheduleGPipe), ("1f1b", Schedule1F1B)):
    torch.manual_seed(0)
    layers = [torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
              torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4)]
    stage_module = torch.nn.Sequential(*(layers[:4] if RANK == 0 else layers[4:])).to(device)
    stage = PipelineStage(stage_module, RANK, WORLD, device)
    schedule = schedule_class(stage, n_microbatches=4, loss_fn=torch.nn.functional.mse_loss)
    opt = torch.optim.SGD(stage_module.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(7)
    losses, grads = [], []
    for step in range(2):
        x = torch.randn(8, 12, generator=gen).to(device)
        y = torch.randn(8, 4, generator=gen).to(device)
        opt.zero_grad()
        step_losses = []
        if RANK == 0:
            schedule.step(x)
        else:
            schedule.step(target=y, losses=step_losses)
        losses.append([l.item() for l in step_losses])
        grads.append([p.grad.cpu().flatten().tolist() for p in stage_module.parameters()])
        opt.step()
    results[name] = dict(losses=losses, grads=grads,
                         devices=sorted({p.device.type for p in stage_module.parameters()}))
report(results=results)
dist.destroy_process_group()
"""

def test_gpipe_and_1f1b_on_npusim_match_gloo():
    npusim = launch(PIPELINE, 2, env={"PP_DEVICE": "npusim"}, timeout=120)
    gloo = launch(PIPELINE, 2, env={"PP_DEVICE": "cpu", "TORCH_DEVICE_BACKEND_AUTOLOAD": "0"}, timeout=120)
    assert_clean(npusim)
    assert_clean(gloo)
    import torch

    for rank in range(2):
        got, want = npusim[rank].result("results"), gloo[rank].result("results")
        for schedule in ("gpipe", "1f1b"):
            assert got[schedule]["devices"] == ["npusim"], describe(npusim)
            if rank == 1:  # the last stage computes the loss of each of the 4 microbatches
                assert [len(step) for step in got[schedule]["losses"]] == [4, 4]
                torch.testing.assert_close(torch.tensor(got[schedule]["losses"]),
                                           torch.tensor(want[schedule]["losses"]), rtol=1e-6, atol=1e-7)
            for step_got, step_want in zip(got[schedule]["grads"], want[schedule]["grads"]):
                for g, w in zip(step_got, step_want):
                    assert any(v != 0 for v in g), f"{schedule} rank {rank}: a zero gradient"
                    torch.testing.assert_close(torch.tensor(g), torch.tensor(w), rtol=1e-6, atol=1e-7)
