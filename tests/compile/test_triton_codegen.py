"""torch.compile(backend="npusim", options={"npusim_codegen": "triton"}): Inductor's Triton
kernels run by Triton's interpreter on npusim memory, forward and backward, matching eager,
with no host copy; the default codegen stays C++ before and after, in the same process.

The interpreter is slow (about a millisecond per program), so the shapes are tiny.
"""
import copy
import os

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install 'torch_npu_sim[triton]', "
                                     "or bash scripts/install_triton.sh)")

from torch._inductor.utils import run_and_get_code  # noqa: E402

import torch_npu_sim.integrations.triton as npusim_triton  # noqa: E402
from torch_npu_sim.compile import triton_codegen  # noqa: E402

from models import TransformerBlock  # noqa: E402

DEVICE = "npusim"
TRITON = {"npusim_codegen": "triton"}


# no_host_copies: tests/conftest.py


def _is_triton(code: str) -> bool:
    return "@triton.jit" in code and "cpp_fused_" not in code


def _is_cpp(code: str) -> bool:
    return "cpp_fused_" in code and "@triton.jit" not in code


def pointwise_and_reduction(x, w):
    y = torch.tanh(x * w + 1.0)
    return torch.exp(y).sum(dim=-1) + torch.sigmoid(x).amax(dim=-1), (y * y).mean()


def test_pointwise_and_reduction_forward_and_backward(no_host_copies):
    x_cpu = torch.randn(4, 33, requires_grad=True)
    w_cpu = torch.randn(33, requires_grad=True)
    x = x_cpu.detach().to(DEVICE).requires_grad_()
    w = w_cpu.detach().to(DEVICE).requires_grad_()
    compiled = torch.compile(pointwise_and_reduction, backend="npusim", options=TRITON)
    (rows, mean), codes = run_and_get_code(compiled, x, w)
    assert rows.device.type == DEVICE and codes and all(_is_triton(code) for code in codes)
    (rows.sum() + mean).backward()
    expected_rows, expected_mean = pointwise_and_reduction(x_cpu, w_cpu)
    (expected_rows.sum() + expected_mean).backward()
    no_host_copies.clear()  # the comparisons below copy on purpose
    torch.testing.assert_close(rows.detach().to("cpu"), expected_rows.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mean.detach().to("cpu"), expected_mean.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad.to("cpu"), x_cpu.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.grad.to("cpu"), w_cpu.grad, rtol=1e-5, atol=1e-5)


def test_transformer_block_training_forward_and_backward(no_host_copies):
    torch.manual_seed(0)
    eager = TransformerBlock(dim=16, heads=2, mlp_ratio=2).train()
    model = copy.deepcopy(eager).to(DEVICE).train()
    x_cpu = torch.randn(1, 4, 16, requires_grad=True)
    x = x_cpu.detach().to(DEVICE).requires_grad_()
    compiles = triton_codegen.counters["triton_compiles"]
    out, codes = run_and_get_code(torch.compile(model, backend="npusim", options=TRITON), x)
    assert out.device.type == DEVICE and all(_is_triton(code) for code in codes)
    out.square().mean().backward()  # the backward graph is compiled now, in Triton mode too
    assert triton_codegen.counters["triton_compiles"] == compiles + 2
    expected = eager(x_cpu)
    expected.square().mean().backward()
    no_host_copies.clear()
    torch.testing.assert_close(out.detach().to("cpu"), expected.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x.grad.to("cpu"), x_cpu.grad, rtol=1e-4, atol=1e-4)
    for (name, param), reference in zip(model.named_parameters(), eager.parameters()):
        assert param.grad is not None, name
        torch.testing.assert_close(param.grad.to("cpu"), reference.grad, rtol=1e-4, atol=1e-4, msg=name)


def _codes(options, fn, *args):
    torch._dynamo.reset()
    _, codes = run_and_get_code(torch.compile(fn, backend="npusim", options=options), *args)
    return codes


def test_default_codegen_stays_cpp_around_triton_mode():
    def fn(x):
        return torch.relu(x).sum(dim=-1) * 2

    x = torch.randn(3, 5, device=DEVICE)
    # same graph each time: a cached artifact of the other codegen would show up here
    assert all(_is_cpp(code) for code in _codes(None, fn, x))
    assert all(_is_triton(code) for code in _codes(TRITON, fn, x))
    assert all(_is_cpp(code) for code in _codes(None, fn, x))
    assert all(_is_cpp(code) for code in _codes({"npusim_codegen": "cpp"}, fn, x))
    assert all(_is_triton(code) for code in _codes(TRITON, fn, x))
    torch._dynamo.reset()
    _, (code,) = run_and_get_code(torch.compile(fn), x)  # plain torch.compile (Inductor)
    assert _is_cpp(code)


def test_triton_mode_switches_are_undone():
    import torch._inductor.runtime.triton_helpers as triton_helpers
    import torch.utils._triton as torch_triton
    from torch._inductor.codegen.common import get_scheduling_for_device

    from torch_npu_sim.compile.device_interface import NpuSimInterface
    from torch_npu_sim.compile.inductor import NpuSimScheduling

    previous = os.environ.get("TRITON_INTERPRET")
    hash_fn, set_driver = torch_triton.triton_hash_with_backend, triton_helpers.set_driver_to_gpu
    with triton_codegen.triton_mode():
        assert os.environ["TRITON_INTERPRET"] == "1" and NpuSimInterface.is_triton_capable()
        assert get_scheduling_for_device(DEVICE) is not NpuSimScheduling
        assert torch_triton.triton_hash_with_backend() != ""
        assert triton_helpers.set_driver_to_gpu() is None
        assert torch.compiler.config.force_disable_caches
    assert os.environ.get("TRITON_INTERPRET") == previous
    assert torch_triton.triton_hash_with_backend is hash_fn and triton_helpers.set_driver_to_gpu is set_driver
    assert get_scheduling_for_device(DEVICE) is NpuSimScheduling and not NpuSimInterface.is_triton_capable()


def test_unknown_codegen_is_a_value_error():
    with pytest.raises(ValueError, match="npusim_codegen"):
        triton_codegen.parse({"npusim_codegen": "cuda"})
    fn = torch.compile(lambda x: x + 1, backend="npusim", options={"npusim_codegen": "TRITON"})
    with pytest.raises(Exception, match="npusim_codegen"):
        fn(torch.ones(2, device=DEVICE))


def test_an_unchecked_torch_is_refused(monkeypatch):
    from torch_npu_sim import _private_torch

    monkeypatch.setattr(_private_torch, "torch_version", lambda: (3, 0))
    with pytest.raises(_private_torch.PrivateTorchApiError, match="npusim_codegen='triton' is refused"):
        with triton_codegen.triton_mode():
            pass


def _median_ms(fn, runs=5):
    import statistics
    import time

    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


if __name__ == "__main__":  # the cost figure of the README: python tests/compile/test_triton_codegen.py
    torch.set_num_threads(1)
    torch.manual_seed(0)
    block = TransformerBlock(dim=16, heads=2, mlp_ratio=2).to(DEVICE).train()
    x = torch.randn(1, 4, 16, device=DEVICE, requires_grad=True)
    modes = {"eager": block, "compiled C++": torch.compile(block, backend="npusim"),
             "compiled Triton (interpreter)": torch.compile(block, backend="npusim", options=TRITON)}
    for name, model in modes.items():
        model(x).sum().backward()  # compiles, forward and backward
        forward = _median_ms(lambda: model(x))
        step = _median_ms(lambda: model(x).sum().backward())
        print(f"{name:30s} forward {forward:9.2f} ms   forward+backward {step:9.2f} ms")
