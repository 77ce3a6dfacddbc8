"""Random numbers: determinism, state layout, per-device generators."""
import torch


def test_same_seed_same_numbers():
    torch.npusim.manual_seed(1234)
    a = torch.randn(100, device="npusim").cpu()
    b = torch.rand(7, 3, device="npusim").cpu()
    torch.npusim.manual_seed(1234)
    assert torch.equal(a, torch.randn(100, device="npusim").cpu())
    assert torch.equal(b, torch.rand(7, 3, device="npusim").cpu())
    assert not torch.equal(a, torch.randn(100, device="npusim").cpu())  # the stream advances


def test_torch_manual_seed_seeds_npusim():
    torch.manual_seed(7)
    a = torch.randn(10, device="npusim:2").cpu()
    torch.manual_seed(7)
    assert torch.equal(a, torch.randn(10, device="npusim:2").cpu())
    assert torch.npusim.initial_seed() == 7


def test_state_is_seed_and_offset():
    torch.npusim.manual_seed(99)
    state = torch.npusim.get_rng_state()
    assert state.dtype == torch.uint8 and state.numel() == 16
    seed, offset = state.view(torch.int64).tolist()
    assert (seed, offset) == (99, 0)
    x = torch.randn(10, device="npusim").cpu()
    assert torch.npusim.get_rng_state().view(torch.int64)[1].item() > 0
    torch.npusim.set_rng_state(state)
    assert torch.equal(x, torch.randn(10, device="npusim").cpu())


def test_per_device_generators_and_all_state():
    torch.npusim.manual_seed_all(5)
    states = torch.npusim.get_rng_state_all()
    assert len(states) == torch.npusim.device_count()
    a = torch.randn(4, device="npusim:1").cpu()
    torch.randn(4, device="npusim:0")  # advances device 0 only
    torch.npusim.set_rng_state_all(states)
    assert torch.equal(a, torch.randn(4, device="npusim:1").cpu())


def test_explicit_generator_and_dropout():
    g = torch.Generator(device="npusim")
    g.manual_seed(3)
    a = torch.randn(5, device="npusim", generator=g).cpu()
    g.manual_seed(3)
    assert torch.equal(a, torch.randn(5, device="npusim", generator=g).cpu())
    torch.npusim.manual_seed(0)
    d1 = torch.nn.functional.dropout(torch.ones(1000, device="npusim"), 0.5).cpu()
    torch.npusim.manual_seed(0)
    d2 = torch.nn.functional.dropout(torch.ones(1000, device="npusim"), 0.5).cpu()
    assert torch.equal(d1, d2) and 300 < int((d1 == 0).sum()) < 700


def test_fork_rng_restores_npusim_state():
    torch.npusim.manual_seed(11)
    with torch.random.fork_rng(devices=[0], device_type="npusim"):
        torch.randn(10, device="npusim")
    after = torch.randn(3, device="npusim").cpu()
    torch.npusim.manual_seed(11)
    assert torch.equal(after, torch.randn(3, device="npusim").cpu())
