"""FlexAttention on npusim (eager and compiled, forward and backward) against the CPU.

A causal block mask and a score_mod with a captured per-head tensor. The CPU runs
FlexAttention forward only (torch refuses its backward on the CPU), so the gradients'
reference is the same attention written as dense math and differentiated by autograd on
the CPU; its forward is checked against the CPU's flex_attention first.
"""
import warnings

import pytest
import torch
import torch._functorch.config as functorch_config
import torch._inductor.config as inductor_config
from torch._dynamo.utils import counters
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from torch_npu_sim import _private_torch
from torch_npu_sim.compile import flex_attention as npusim_flex

B, H, S, D = 2, 2, 256, 16  # two 128-blocks per side: full, partial and empty blocks
TOL = dict(rtol=1e-5, atol=1e-5)
GRAD_TOL = dict(rtol=1e-4, atol=1e-5)

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def make_score_mod(slopes):
    def score_mod(score, b, h, q_idx, kv_idx):
        return score + slopes[h] * (kv_idx - q_idx).to(score.dtype) / S

    return score_mod


def reference(q, k, v, slopes):
    """The same attention as dense CPU math (ALiBi-like bias, causal mask)."""
    scores = q @ k.transpose(-2, -1) / D**0.5
    q_idx = torch.arange(S).view(S, 1)
    kv_idx = torch.arange(S).view(1, S)
    scores = scores + slopes.view(1, H, 1, 1) * (kv_idx - q_idx).to(scores.dtype) / S
    scores = scores.masked_fill(q_idx < kv_idx, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


@pytest.fixture
def inputs():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, S, D, generator=gen) for _ in range(3))
    slopes = torch.tensor([0.5, 2.0])
    return q, k, v, slopes


def cpu_forward_and_grads(q, k, v, slopes, grad_out):
    with torch.no_grad():
        cpu_flex = flex_attention(q, k, v, score_mod=make_score_mod(slopes),
                                  block_mask=create_block_mask(causal, B, H, S, S, device="cpu"))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = reference(*leaves, slopes)
    torch.testing.assert_close(out.detach(), cpu_flex, **TOL)  # the reference is the CPU's flex attention
    out.backward(grad_out)
    return cpu_flex, [t.grad for t in leaves]


def npusim_leaves(*tensors):
    return [t.to("npusim").requires_grad_() for t in tensors]


def check_against_cpu(out, leaves, cpu_out, cpu_grads):
    assert out.device.type == "npusim"
    torch.testing.assert_close(out.detach().cpu(), cpu_out, **TOL)
    for name, leaf, want in zip("qkv", leaves, cpu_grads):
        assert leaf.grad is not None and leaf.grad.device.type == "npusim", name
        torch.testing.assert_close(leaf.grad.cpu(), want, **GRAD_TOL, msg=lambda m: f"grad of {name}: {m}")


def test_eager_forward_and_backward_match_the_cpu(inputs):
    q, k, v, slopes = inputs
    grad_out = torch.randn(B, H, S, D, generator=torch.Generator().manual_seed(1))
    cpu_out, cpu_grads = cpu_forward_and_grads(q, k, v, slopes, grad_out)

    leaves = npusim_leaves(q, k, v)
    mask = create_block_mask(causal, B, H, S, S, device="npusim")
    out = flex_attention(*leaves, score_mod=make_score_mod(slopes.to("npusim")), block_mask=mask)
    out.backward(grad_out.to("npusim"))
    check_against_cpu(out, leaves, cpu_out, cpu_grads)


def test_compiled_inference_runs_the_cpp_template(inputs):
    q, k, v, slopes = inputs
    cpu_out, _ = cpu_forward_and_grads(q, k, v, slopes, torch.ones(B, H, S, D))
    mask = create_block_mask(causal, B, H, S, S, device="npusim")
    counters.clear()
    dense_before = npusim_flex.dense_traces
    # no FX graph cache: a cache hit would skip the code generation whose counter is read
    with inductor_config.patch(fx_graph_cache=False), torch.no_grad():
        out = torch.compile(flex_attention, fullgraph=True)(
            *(t.to("npusim") for t in (q, k, v)), score_mod=make_score_mod(slopes.to("npusim")), block_mask=mask)
    assert counters["inductor"]["cpp_templated_kernel_counter"] == 1, dict(counters["inductor"])
    assert npusim_flex.dense_traces == dense_before  # the template, not the dense math
    assert out.device.type == "npusim"
    torch.testing.assert_close(out.cpu(), cpu_out, **TOL)


def test_compiled_training_matches_the_cpu(inputs):
    """No C++ backward template exists: compiled training traces the dense math (counted)."""
    q, k, v, slopes = inputs
    grad_out = torch.randn(B, H, S, D, generator=torch.Generator().manual_seed(2))
    cpu_out, cpu_grads = cpu_forward_and_grads(q, k, v, slopes, grad_out)

    leaves = npusim_leaves(q, k, v)
    mask = create_block_mask(causal, B, H, S, S, device="npusim")
    counters.clear()
    dense_before = npusim_flex.dense_traces
    with inductor_config.patch(fx_graph_cache=False), functorch_config.patch(enable_autograd_cache=False):
        out = torch.compile(flex_attention, fullgraph=True)(
            *leaves, score_mod=make_score_mod(slopes.to("npusim")), block_mask=mask)
        out.backward(grad_out.to("npusim"))
    assert npusim_flex.dense_traces > dense_before
    assert counters["inductor"]["cpp_templated_kernel_counter"] == 0
    check_against_cpu(out, leaves, cpu_out, cpu_grads)


def test_the_patches_are_active_on_this_torch():
    """Fails loudly when torch changes under the FlexAttention patches."""
    import torch._inductor.compile_fx  # noqa: F401  (registers Inductor for npusim)
    import torch.nn.attention.flex_attention as front_end
    from torch._C import DispatchKey
    from torch._higher_order_ops import flex_attention as hop
    from torch._inductor.lowering import lowerings

    assert getattr(front_end._validate_device, "_npusim_flex_attention", False)
    assert DispatchKey.AutogradPrivateUse1 in hop.py_kernels
    assert getattr(lowerings[torch.ops.higher_order.flex_attention], "_npusim_flex_attention", False)
    # the CPU keeps torch's rules: its backward is still refused
    q = torch.randn(1, 1, 128, 16, requires_grad=True)
    with pytest.raises(NotImplementedError, match="backward on CPU"):
        flex_attention(q, q, q)


def test_an_unchecked_torch_skips_the_patches_with_a_warning(monkeypatch):
    monkeypatch.setattr(_private_torch, "torch_version", lambda: (2, 99))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert npusim_flex.install_front_end() is False
        assert npusim_flex.install_lowering() is False
    messages = [str(w.message) for w in caught]
    assert any("torch.nn.attention.flex_attention:_validate_device" in m and "not checked" in m for m in messages)
    assert any("flex_cpu:lower_cpu" in m for m in messages), messages
