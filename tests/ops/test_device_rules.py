"""Device rules as on CUDA, and the zero-copy fallback's promises: views stay views of
npusim memory, in-place and out= write npusim memory, results are npusim allocations."""
import pytest
import torch


def test_zero_dim_cpu_tensor_mixes_with_npusim():
    a = torch.arange(4.0, device="npusim")
    out = a * torch.tensor(2.0)
    assert out.device.type == "npusim"
    torch.testing.assert_close(out.cpu(), torch.arange(4.0) * 2)


@pytest.mark.parametrize("other", [lambda: torch.ones(4), lambda: torch.ones(4, device="npusim:1")])
def test_mixed_devices_raise(other):
    a = torch.ones(4, device="npusim:0")
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        a + other()


def test_outputs_stay_on_the_inputs_device():
    a = torch.randn(3, 3, device="npusim:3")
    for out in (a + 1, a @ a, a.softmax(-1), torch.sort(a)[0], a.max(dim=0).values, a.nonzero()):
        assert out.device == torch.device("npusim:3")


def test_views_are_views_of_npusim_memory():
    a = torch.arange(12.0, device="npusim").reshape(3, 4)
    for view in (a.t(), a[1], a.diagonal(), a.unflatten(1, (2, 2)), a.narrow(1, 1, 2), a.unbind(0)[2], a.split(2, 1)[1]):
        assert view.device.type == "npusim"
        assert view.untyped_storage().data_ptr() == a.untyped_storage().data_ptr()
    a.t()[0, 0] = 100.0
    assert a[0, 0].item() == 100.0


def test_inplace_and_out_write_npusim_memory():
    a = torch.ones(4, device="npusim")
    ptr = a.data_ptr()
    a.mul_(3).add_(torch.ones(4, device="npusim"))
    assert a.data_ptr() == ptr and a.cpu().tolist() == [4.0] * 4
    out = torch.empty(4, device="npusim")
    optr = out.data_ptr()
    torch.add(a, 1, out=out)
    assert out.data_ptr() == optr and out.cpu().tolist() == [5.0] * 4
    grown = torch.empty(0, device="npusim")
    torch.mul(a, 2, out=grown)  # out= resized by the kernel: still npusim memory
    assert grown.device.type == "npusim" and grown.cpu().tolist() == [8.0] * 4


def test_results_are_counted_by_the_npusim_allocator():
    torch.npusim.synchronize()
    a = torch.randn(1024, 1024, device="npusim")
    before = torch.npusim.memory_allocated()
    b = a.exp()  # a CPU kernel under the fallback: its output is an npusim allocation
    assert torch.npusim.memory_allocated() - before >= 4 * 1024 * 1024
    del b
    assert torch.npusim.memory_allocated() == before


def test_results_on_another_device_are_views_and_allocations_there():
    a = torch.arange(12.0, device="npusim:3").reshape(3, 4)
    for view in (a.t(), a[1:], a.view(4, 3), a.expand(2, 3, 4)):
        assert view.device == torch.device("npusim:3")
        assert view.untyped_storage().data_ptr() == a.untyped_storage().data_ptr()
    before = torch.npusim.memory_allocated(3)
    b = a.exp()
    assert b.device == torch.device("npusim:3") and torch.npusim.memory_allocated(3) > before


def test_new_results_grow_memory_allocated_by_their_size():
    a = torch.randn(1024, 1024, device="npusim")
    for make in (lambda: a.exp(), lambda: a + a, lambda: a.to(torch.float64), lambda: a.t().contiguous()):
        before = torch.npusim.memory_allocated()
        out = make()
        assert torch.npusim.memory_allocated() - before == out.untyped_storage().nbytes()
        del out
        assert torch.npusim.memory_allocated() == before


def test_out_and_inplace_reject_other_devices():
    a = torch.ones(4, device="npusim:0")
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        a.add_(torch.ones(4))
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        torch.exp(a, out=torch.empty(4, device="npusim:1"))


def test_hot_ops_skip_the_fallback():
    from torch_npu_sim import _C

    a, b = torch.ones(8, device="npusim"), torch.ones(8, device="npusim")
    ops = {
        "a + b": lambda: a + b,
        "a.add_(b)": lambda: a.add_(b),
        "a * 2": lambda: a * 2,
        "a.to(float64)": lambda: a.to(torch.float64),
        "a.cpu()": lambda: a.cpu(),
        "cpu.to(npusim)": lambda: torch.ones(8).to("npusim"),
        "torch.empty": lambda: torch.empty(8, device="npusim"),
    }
    for name, fn in ops.items():
        before = _C._fallback_calls()
        fn()
        assert _C._fallback_calls() == before, f"{name} went through the fallback"
    before = _C._fallback_calls()
    a.exp()
    assert _C._fallback_calls() == before + 1  # the counter does count
