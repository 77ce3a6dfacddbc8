"""Training features on npusim: activation checkpointing, torch.compile of an FSDP2 model,
meta-device initialisation with FSDP2, and DCP's async_save. Each is compared with what
it must equal: the CPU, eager execution, or the state that was saved."""
import pytest
import torch
from torch.utils.checkpoint import checkpoint

from launcher import assert_clean, describe, launch


class Block(torch.nn.Module):
    def __init__(self, dropout: float):
        super().__init__()
        self.norm = torch.nn.LayerNorm(16)
        self.fc1, self.fc2 = torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)
        self.drop = torch.nn.Dropout(dropout)

    def forward(self, x):
        return x + self.drop(self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(x)))))


class Net(torch.nn.Module):
    def __init__(self, use_checkpoint: bool, dropout: float = 0.0):
        super().__init__()
        self.blocks = torch.nn.ModuleList(Block(dropout) for _ in range(2))
        self.head = torch.nn.Linear(16, 4)
        self.use_checkpoint = use_checkpoint

    def forward(self, x):
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.use_checkpoint else block(x)
        return self.head(x)


def train(device: str, use_checkpoint: bool, dropout: float = 0.0, steps: int = 3):
    torch.manual_seed(0)
    model = Net(use_checkpoint, dropout).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 16, generator=gen).to(device), torch.randn(8, 4, generator=gen).to(device)
    torch.manual_seed(2)  # dropout masks come from the device's generator
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        losses.append(loss.item())
        grads = [p.grad.cpu().clone() for p in model.parameters()]
        opt.step()
    return losses, grads


def test_activation_checkpointing_on_npusim_matches_the_cpu():
    cpu_losses, cpu_grads = train("cpu", use_checkpoint=True)
    losses, grads = train("npusim", use_checkpoint=True)
    plain_losses, _ = train("npusim", use_checkpoint=False)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(cpu_losses), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(plain_losses), rtol=0, atol=0)
    for got, want in zip(grads, cpu_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert losses[-1] < losses[0]


def test_activation_checkpointing_replays_npusim_dropout():
    """The recomputed forward must draw the same dropout masks (checkpoint saves and restores
    the npusim generator's state); npusim's random stream differs from the CPU's, so the
    reference is the same model without checkpointing."""
    losses, grads = train("npusim", use_checkpoint=True, dropout=0.5)
    # checkpoint stashes device RNG states only when the device module says it is initialised
    assert getattr(torch.npusim, "_initialized", False) is True
    plain_losses, plain_grads = train("npusim", use_checkpoint=False, dropout=0.5)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(plain_losses), rtol=0, atol=0)
    for got, want in zip(grads, plain_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


COMPILED_FSDP2 = """
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
dist.init_process_group("npusim", timeout=timedelta(seconds=120))
torch.npusim.set_device(RANK)
mesh = init_device_mesh("npusim", (WORLD,))

class Block(torch.nn.Module):  # a module of this file: Dynamo traces no torch.nn forward as a frame
    def __init__(self, inp, out):
        super().__init__()
        self.fc = torch.nn.Linear(inp, out)

    def forward(self, x):
        return torch.nn.functional.gelu(self.fc(x)) + 0.5 * self.fc(x).tanh()

def run(compiled):
    torch.manual_seed(0)
    model = torch.nn.Sequential(Block(16, 32), Block(32, 4)).to("npusim")
    for layer in model:
        if compiled:  # per block, before sharding, as torchtitan does: FSDP's hooks stay eager
            layer.compile()
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    forward = model
    gen = torch.Generator().manual_seed(10 + RANK)
    x, y = torch.randn(8, 16, generator=gen).to("npusim"), torch.randn(8, 4, generator=gen).to("npusim")
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(forward(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.full_tensor().cpu().flatten().tolist() for p in model.parameters()]

from torch._dynamo.utils import counters
eager = run(False)
compiled = run(True)
report(eager=eager, compiled=compiled, graphs=counters["stats"]["unique_graphs"],
       inductor_graphs=counters["inductor"]["fxgraph_cache_miss"] + counters["inductor"]["fxgraph_cache_hit"])
dist.destroy_process_group()
"""


def test_compiled_fsdp2_on_npusim_matches_eager():
    outcomes = launch(COMPILED_FSDP2, 2, timeout=240)
    assert_clean(outcomes)
    for outcome in outcomes:
        (eager_losses, eager_params), (losses, params) = outcome.result("eager"), outcome.result("compiled")
        # both blocks compiled by Inductor (forward and backward graphs)
        assert outcome.result("graphs") >= 2 and outcome.result("inductor_graphs") >= 4, describe(outcomes)
        torch.testing.assert_close(torch.tensor(losses), torch.tensor(eager_losses), rtol=1e-5, atol=1e-6)
        for got, want in zip(params, eager_params):
            torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-5, atol=1e-6)
        assert losses[-1] < losses[0]


META_INIT_AND_ASYNC_SAVE = """
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
torch.npusim.set_device(RANK)
mesh = init_device_mesh("npusim", (WORLD,))

def build(on_meta):
    with torch.device("meta" if on_meta else "cpu"):
        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    for layer in (model[0], model[2]):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model

def train(model, steps):
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(20 + RANK)
    losses = []
    for _ in range(steps):
        x, y = torch.randn(8, 16, generator=gen).to("npusim"), torch.randn(8, 4, generator=gen).to("npusim")
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return opt, losses

def full(model):
    return [p.full_tensor().cpu() for p in model.parameters()]

# meta-device init: no memory until to_empty, then reset_parameters on the shards
model = build(on_meta=True)
meta_devices = sorted({p.device.type for p in model.parameters()})
model.to_empty(device="npusim")
torch.manual_seed(0)
for module in model.modules():
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
init = full(model)
# the same start built the ordinary way (copied in), as the reference for training
reference = build(on_meta=False)
with torch.no_grad():
    for p, value in zip(reference.parameters(), init):
        p.copy_(torch.distributed.tensor.distribute_tensor(value.to("npusim"), mesh, p.placements))
opt, losses = train(model, 3)
_, reference_losses = train(reference, 3)
report(meta=dict(meta_devices=meta_devices, devices=sorted({p.device.type for p in model.parameters()}),
                 init=[t.flatten().tolist() for t in init], losses=losses, reference_losses=reference_losses))

# async_save of model + optimizer, then load into a fresh model and optimizer
saved_model, saved_opt = get_state_dict(model, opt)
expected = {k: v.full_tensor().cpu() for k, v in saved_model.items()}
expected_opt = {f"{k}.{s}": v.full_tensor().cpu() if hasattr(v, "full_tensor") else v
                for k, st in saved_opt["state"].items() for s, v in st.items()}
# The save's collectives run in a background thread while training issues its own: they
# need a group of their own (as torchtitan's async checkpointing makes), or the two threads
# interleave their calls on one group differently on each rank.
checkpoint_group = dist.new_group(backend="npusim")
future = dcp.async_save({"model": saved_model, "optim": saved_opt}, process_group=checkpoint_group,
                        checkpoint_id=os.path.join(os.environ["DIST_TEST_DIR"], "ckpt"))
train(model, 1)  # training goes on while the checkpoint is written: the saved state must not change
future.result()
fresh = build(on_meta=False).to("npusim")
fresh_opt, _ = train(fresh, 1)  # different weights and optimizer state before loading
model_sd, opt_sd = get_state_dict(fresh, fresh_opt)
state = {"model": model_sd, "optim": opt_sd}
dcp.load(state, checkpoint_id=os.path.join(os.environ["DIST_TEST_DIR"], "ckpt"))
set_state_dict(fresh, fresh_opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
loaded_model, loaded_opt = get_state_dict(fresh, fresh_opt)
mismatched = [k for k, v in loaded_model.items() if not torch.equal(v.full_tensor().cpu(), expected[k])]
loaded_opt_flat = {f"{k}.{s}": v.full_tensor().cpu() if hasattr(v, "full_tensor") else v
                   for k, st in loaded_opt["state"].items() for s, v in st.items()}
mismatched += [k for k, v in expected_opt.items() if not torch.equal(torch.as_tensor(loaded_opt_flat[k]),
                                                                      torch.as_tensor(v))]
report(dcp=dict(keys=sorted(expected), opt_keys=sorted(expected_opt), mismatched=mismatched,
                loaded_devices=sorted({v.device.type for v in loaded_model.values()})))
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def meta_init_and_async_save():
    outcomes = launch(META_INIT_AND_ASYNC_SAVE, 2, timeout=180)
    assert_clean(outcomes)
    return outcomes


def test_meta_init_to_empty_and_reset_parameters_with_fsdp2(meta_init_and_async_save):
    results = [o.result("meta") for o in meta_init_and_async_save]
    for r in results:
        assert r["meta_devices"] == ["meta"] and r["devices"] == ["npusim"]
        # nn.Linear's init: |w| and |b| <= 1/sqrt(fan_in), not a constant (to_empty's memory is not initialised)
        for values, fan_in in zip(r["init"], (16, 16, 32, 32)):
            t = torch.tensor(values)
            assert t.abs().max() <= fan_in ** -0.5 and t.std() > 0.1 * fan_in ** -0.5
        torch.testing.assert_close(torch.tensor(r["losses"]), torch.tensor(r["reference_losses"]),
                                   rtol=1e-6, atol=1e-7)
        assert r["losses"][-1] < r["losses"][0]
    for a, b in zip(results[0]["init"], results[1]["init"]):  # one model, whichever rank looks
        assert a == b


def test_async_save_then_load_restores_the_saved_state(meta_init_and_async_save):
    for outcome in meta_init_and_async_save:
        r = outcome.result("dcp")
        assert r["keys"] == ["0.bias", "0.weight", "2.bias", "2.weight"], describe(meta_init_and_async_save)
        assert len(r["opt_keys"]) == 12  # step, exp_avg, exp_avg_sq per parameter
        assert r["mismatched"] == []
        assert r["loaded_devices"] == ["npusim"]
