"""scaled_dot_product_attention on npusim picks the kernel the CPU picks for the same inputs,
requires_grad included, so outputs and every gradient (the mask's too) equal the CPU's."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=40, deadline=None)
@given(mask_kind=st.sampled_from(["none", "bool", "float"]), causal=st.booleans(),
       grads=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
       heads=st.sampled_from([1, 2]), length=st.integers(1, 9), head_dim=st.sampled_from([4, 8]),
       seed=st.integers(0, 2**16))
def test_sdpa_outputs_and_gradients_equal_the_cpu(mask_kind, causal, grads, heads, length, head_dim, seed):
    if mask_kind != "none" and causal:
        causal = False  # torch refuses a mask together with is_causal
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, heads, length, head_dim, generator=gen) for _ in range(3))
    mask = {"none": None, "bool": torch.rand(length, length, generator=gen) > 0.3,
            "float": torch.randn(length, length, generator=gen)}[mask_kind]
    if mask is not None and mask.dtype == torch.bool:
        mask[:, 0] = True  # every row attends somewhere
    wants = list(grads[:3]) + [grads[3] and mask_kind == "float"]

    def run(device):
        inputs = [t.detach().to(device, copy=True).requires_grad_(w) if t is not None else None
                  for t, w in zip((q, k, v, mask), wants)]
        out = torch.nn.functional.scaled_dot_product_attention(*inputs[:3], attn_mask=inputs[3], is_causal=causal)
        if any(wants):
            out.sum().backward()
        return out.detach().cpu(), [t.grad.cpu() if t is not None and t.grad is not None else None for t in inputs]

    out_cpu, grads_cpu = run("cpu")
    out_npu, grads_npu = run("npusim")
    torch.testing.assert_close(out_npu, out_cpu, rtol=0, atol=0)
    for g_npu, g_cpu in zip(grads_npu, grads_cpu):
        assert (g_npu is None) == (g_cpu is None)
        if g_cpu is not None:
            torch.testing.assert_close(g_npu, g_cpu, rtol=0, atol=0)


@settings(max_examples=8, deadline=None)
@given(causal=st.booleans(), gqa=st.booleans(), length=st.integers(2, 24), seed=st.integers(0, 2**16))
def test_compiled_sdpa_equals_eager(causal, gqa, length, seed):
    """torch.compile traces attention with fake tensors: npusim's kernel choice must answer for them."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 4, length, 8, generator=gen).to("npusim").requires_grad_()
    kv = torch.randn(1, 2 if gqa else 4, length, 8, generator=gen).to("npusim").requires_grad_()

    def attend(q, kv):
        return torch.nn.functional.scaled_dot_product_attention(q, kv, kv, is_causal=causal, enable_gqa=gqa)

    torch._dynamo.reset()
    eager = attend(q, kv)
    compiled = torch.compile(attend)(q, kv)
    torch.testing.assert_close(compiled.detach().cpu(), eager.detach().cpu(), rtol=0, atol=0)
    (g_eager,) = torch.autograd.grad(eager.sum(), kv)
    (g_compiled,) = torch.autograd.grad(compiled.sum(), kv)
    torch.testing.assert_close(g_compiled.cpu(), g_eager.cpu(), rtol=1e-6, atol=1e-6)
