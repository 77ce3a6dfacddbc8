"""User Triton kernels on npusim tensors: Triton's interpreter on npusim memory in place.

Canonical kernels (vector add, fused softmax, layer norm, a tiled tl.dot matmul, an
atomic-add histogram, an autotuned atomic reduction) launched with ``kernel[grid](...)``
on npusim tensors give torch's CPU results, write npusim memory, and run with no host
copy: the kernel sees the npusim tensors' own addresses and no storage is copied to the CPU.
"""
import pytest
import torch

triton = pytest.importorskip("triton", reason="triton is not installed (pip install 'torch_npu_sim[triton]', "
                                              "or bash scripts/install_triton.sh)")
import triton.language as tl  # noqa: E402

import torch_npu_sim.integrations.triton as npusim_triton  # noqa: E402

npusim_triton.enable()
from torch_npu_sim.integrations.triton import kernels  # noqa: E402

DEVICE = "npusim"


# no_host_copies: tests/conftest.py


def _check(out: torch.Tensor, expected: torch.Tensor, **tolerances) -> None:
    assert out.device.type == DEVICE
    torch.testing.assert_close(out.to("cpu"), expected, **tolerances)


def test_vector_add_masked_tail(no_host_copies):
    x, y = torch.randn(5000, device=DEVICE), torch.randn(5000, device=DEVICE)
    out = kernels.add(x, y, block=1024)  # 5 programs, the last one masked
    _check(out, x.to("cpu") + y.to("cpu"), rtol=0, atol=0)


def test_fused_softmax(no_host_copies):
    x = torch.randn(37, 100, device=DEVICE)
    out = kernels.softmax(x)
    expected = torch.softmax(x.to("cpu"), dim=-1)
    _check(out, expected)


def test_layer_norm(no_host_copies):
    x, w, b = torch.randn(16, 300, device=DEVICE), torch.randn(300, device=DEVICE), torch.randn(300, device=DEVICE)
    out = kernels.layer_norm(x, w, b)
    expected = torch.nn.functional.layer_norm(x.to("cpu"), (300,), w.to("cpu"), b.to("cpu"))
    _check(out, expected, rtol=1e-4, atol=1e-5)


def test_tiled_matmul_with_dot(no_host_copies):
    a, b = torch.randn(70, 50, device=DEVICE), torch.randn(50, 90, device=DEVICE)
    out = kernels.matmul(a, b, block_m=32, block_n=32, block_k=16)  # ragged edges in M, N and K
    expected = a.to("cpu") @ b.to("cpu")
    _check(out, expected, rtol=1e-4, atol=1e-4)


def test_matmul_of_transposed_view():
    # strides reach the kernel as they are: a non-contiguous npusim view, no copy made
    a, b = torch.randn(40, 24, device=DEVICE).t(), torch.randn(40, 8, device=DEVICE)
    _check(kernels.matmul(a, b, 16, 16, 16), a.to("cpu") @ b.to("cpu"), rtol=1e-4, atol=1e-4)


def test_atomic_add_histogram(no_host_copies):
    values = torch.randint(0, 16, (3000,), dtype=torch.int32, device=DEVICE)
    hist = kernels.histogram(values, 16)
    expected = torch.bincount(values.to("cpu").long(), minlength=16).int()
    _check(hist, expected, rtol=0, atol=0)


def test_autotuned_reduction_resets_npusim_output():
    x = torch.randn(6000, device=DEVICE)
    out = kernels.total(x)  # times 3 configs, zeroing `out` (npusim) before each, then runs the best
    assert kernels.sum_kernel.best_config.kwargs["BLOCK"] in (128, 512, 2048)
    _check(out, x.to("cpu").sum().reshape(1), rtol=1e-5, atol=1e-4)
    _check(kernels.total(x), x.to("cpu").sum().reshape(1), rtol=1e-5, atol=1e-4)  # the cached choice


@triton.jit
def _address_kernel(x_ptr, out_ptr):
    tl.store(out_ptr, x_ptr.to(tl.int64, bitcast=True))


def test_kernel_sees_the_npusim_address():
    # stock Triton hands the kernel the address of a host copy; here it is npusim's own
    x = torch.randn(8, device=DEVICE)[2:]
    out = torch.zeros(1, dtype=torch.int64, device=DEVICE)
    _address_kernel[(1,)](x, out)
    assert out.item() == x.data_ptr()


@triton.jit
def _scale(x, factor):
    return x * factor


@triton.jit
def _scale_kernel(x_ptr, out_ptr, n, factor, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(out_ptr + offsets, _scale(tl.load(x_ptr + offsets, mask=mask), factor), mask=mask)


def test_jit_helpers_and_second_device():
    device = f"{DEVICE}:{min(1, torch.npusim.device_count() - 1)}"
    x = torch.randn(300, device=device)
    out = torch.empty_like(x)
    _scale_kernel[(3,)](x, out, 300, 2.5, BLOCK=128)
    assert out.device == torch.device(device)
    _check(out, x.to("cpu") * 2.5)


def test_triton_interpret_kernels_run_in_place_too(monkeypatch):
    # decorated under TRITON_INTERPRET=1 (read when @triton.jit runs): an InterpretedFunction
    monkeypatch.setenv("TRITON_INTERPRET", "1")

    @triton.jit
    def negate_kernel(x_ptr, n, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        tl.store(x_ptr + offsets, -tl.load(x_ptr + offsets, mask=mask), mask=mask)

    monkeypatch.delenv("TRITON_INTERPRET")
    assert type(negate_kernel).__name__ == "InterpretedFunction"
    x = torch.randn(100, device=DEVICE)
    expected = -x.to("cpu")
    before = npusim_triton.counters()
    negate_kernel[(2,)](x, 100, BLOCK=64)
    after = npusim_triton.counters()
    assert after["zero_copy_launches"] == before["zero_copy_launches"] + 1
    assert after["rerouted_launches"] == before["rerouted_launches"]
    _check(x, expected)
    # CPU-only launches keep Triton's own path
    y = torch.randn(100)
    negate_kernel[(2,)](y.clone(), 100, BLOCK=64)
    assert npusim_triton.counters()["zero_copy_launches"] == after["zero_copy_launches"]
