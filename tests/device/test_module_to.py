"""Module.to("npusim") moves parameters in place, as on CUDA: the same Parameter objects,
tied weights stay tied, and an optimizer built before the move trains the moved weights."""
import copy

import torch


def test_parameters_keep_their_identity_across_to_and_back():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    params = {name: p for name, p in model.named_parameters()}
    buffers = {name: b for name, b in model.named_buffers()}
    weights = {name: p.detach().clone() for name, p in params.items()}
    assert torch._has_compatible_shallow_copy_type(torch.zeros(1), torch.zeros(1, device="npusim"))
    model.to("npusim")
    for name, p in model.named_parameters():
        assert p is params[name], f"{name} was re-created by .to()"
        assert p.device.type == "npusim" and torch.equal(p.detach().cpu(), weights[name])
    for name, b in model.named_buffers():
        assert b.device.type == "npusim"
    model.to("npusim:1")
    assert all(p is params[n] and p.device == torch.device("npusim", 1) for n, p in model.named_parameters())
    model.cpu()
    for name, p in model.named_parameters():
        assert p is params[name] and p.device.type == "cpu" and torch.equal(p.detach(), weights[name])
    assert set(buffers) == {n for n, _ in model.named_buffers()}


def test_dtype_and_device_together_keep_identity():
    model = torch.nn.Linear(3, 3)
    weight = model.weight
    model.to("npusim", torch.float64)
    assert model.weight is weight and weight.dtype == torch.float64 and weight.device.type == "npusim"


def test_tied_weights_stay_tied():
    class TiedLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(16, 8)
            self.head = torch.nn.Linear(8, 16, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, ids):
            return self.head(self.embed(ids))

    model = TiedLM().to("npusim")
    assert model.head.weight is model.embed.weight
    assert len(list(model.parameters())) == 1
    ids = torch.tensor([[1, 2, 3]], device="npusim")
    model(ids).sum().backward()
    with torch.no_grad():
        model.embed.weight.add_(1.0)
    assert torch.equal(model.head.weight.detach().cpu(), model.embed.weight.detach().cpu())


def test_optimizer_built_before_the_move_trains_the_moved_weights():
    torch.manual_seed(0)
    reference = torch.nn.Linear(4, 1)
    model = copy.deepcopy(reference)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.to("npusim")
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    for _ in range(3):
        for m, o, dev in ((model, opt, "npusim"), (reference, ref_opt, "cpu")):
            loss = torch.nn.functional.mse_loss(m(x.to(dev)), y.to(dev))
            o.zero_grad()
            loss.backward()
            o.step()
    assert opt.param_groups[0]["params"][0] is model.weight
    torch.testing.assert_close(model.weight.detach().cpu(), reference.weight.detach())
    torch.testing.assert_close(model.bias.detach().cpu(), reference.bias.detach())


def test_param_data_assignment_across_devices():
    p = torch.nn.Parameter(torch.ones(3))
    p.data = torch.full((3,), 2.0, device="npusim")
    assert p.device.type == "npusim" and torch.equal(p.detach().cpu(), torch.full((3,), 2.0))
    p.data = torch.zeros(3)
    assert p.device.type == "cpu"
