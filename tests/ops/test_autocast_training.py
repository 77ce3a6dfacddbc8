"""bf16 autocast training on npusim against the CPU's bf16 autocast.

`torch.autocast("npusim")` applies CUDA's op lists (csrc/aten/Autocast.cpp); the CPU has
its own. Where the lists agree the training is bit-identical (npusim runs the CPU's
kernels): matmul-like ops (linear, matmul, bmm, addmm, einsum, scaled_dot_product_attention)
run in bf16 on both; mse_loss, l1_loss, nll_loss, prod, cdist in fp32 on both;
ops on neither list (relu, gelu, ...) run in their input's dtype on both.

Where they differ (checked op by op in `test_op_lists_differ_where_documented`):
* npusim runs in fp32, the CPU in bf16: softmax, log_softmax, layer_norm, rms_norm, exp,
  rsqrt, pow, sum, cumsum (CUDA's fp32 and fp32-accumulate lists, absent from the CPU's);
* npusim runs in bf16, the CPU in fp32: mv (CUDA lists it as lower precision, the CPU
  does not), and the log_softmax inside cross_entropy: the CPU's list has cross_entropy
  whole in fp32; CUDA's, and so npusim's, leave it to decompose into log_softmax with
  the logits' dtype (explicit, so not upcast) then nll_loss in fp32. The loss dtype is
  fp32 on both, its value is not (`test_cross_entropy_differs`).
So a model with LayerNorm/RMSNorm or an explicit softmax trains with more precision on
npusim than under the CPU's autocast: close, not equal (`test_layer_norm_model_differs`).
"""
import copy

import pytest
import torch
import torch.nn.functional as F


class NoNormBlock(torch.nn.Module):
    """Attention and MLP with no norm or explicit softmax: only ops both lists agree on."""

    def __init__(self, dim=32, heads=2, vocab=64, norm=False):
        super().__init__()
        self.heads = heads
        self.embed = torch.nn.Embedding(vocab, dim)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, 4 * dim), torch.nn.GELU(),
                                       torch.nn.Linear(4 * dim, dim), torch.nn.ReLU())
        self.norm = torch.nn.LayerNorm(dim) if norm else torch.nn.Identity()
        self.head = torch.nn.Linear(dim, vocab)

    def forward(self, tokens):
        h = self.embed(tokens)
        b, s, d = h.shape
        q, k, v = self.qkv(h).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.proj(attn.transpose(1, 2).reshape(b, s, d))
        # the norm of a bf16 activation: fp32 on npusim, bf16 on the CPU, which the fp32
        # residual stream keeps
        h = h + self.norm(self.mlp(h))
        return self.head(h)


def train(model, device, tokens, steps=5):
    model = copy.deepcopy(model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = tokens.to(device)
    target = torch.nn.functional.one_hot(x[:, 1:], 64).float()
    losses, grads = [], []
    for _ in range(steps):
        opt.zero_grad()
        with torch.autocast(device, dtype=torch.bfloat16):
            logits = model(x[:, :-1])
            assert logits.dtype == torch.bfloat16  # autocast is on
            loss = F.mse_loss(logits, target)  # cross_entropy differs, see the module doc
        assert loss.dtype == torch.float32  # mse_loss is fp32 on both lists
        loss.backward()
        grads.append([p.grad.detach().cpu().clone() for p in model.parameters()])
        opt.step()
        losses.append(loss.detach().cpu())
    return torch.stack(losses), grads, [p.detach().cpu() for p in model.parameters()]


@pytest.fixture
def tokens():
    torch.manual_seed(0)
    return torch.randint(0, 64, (4, 17))


def test_bf16_autocast_training_is_bitwise_the_cpus_where_lists_agree(tokens):
    torch.manual_seed(1)
    model = NoNormBlock()
    cpu, npu = train(model, "cpu", tokens), train(model, "npusim", tokens)
    torch.testing.assert_close(npu[0], cpu[0], rtol=0, atol=0)
    for g_npu, g_cpu in zip(npu[1], cpu[1]):
        for a, b in zip(g_npu, g_cpu):
            assert a.dtype == torch.float32  # master weights and their grads stay fp32
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(npu[2], cpu[2]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert cpu[0][-1] < cpu[0][0]  # it trained


def test_layer_norm_model_differs(tokens):
    # LayerNorm runs in fp32 under npusim's autocast and in bf16 under the CPU's (its
    # output rounds the same once a bf16 linear consumes it; a residual add keeps it)
    torch.manual_seed(1)
    model = NoNormBlock(norm=True)
    cpu, npu = train(model, "cpu", tokens, steps=3), train(model, "npusim", tokens, steps=3)
    assert not torch.equal(npu[0], cpu[0])
    torch.testing.assert_close(npu[0], cpu[0], rtol=2e-2, atol=0)  # bf16-level agreement


def test_cross_entropy_differs():
    torch.manual_seed(0)
    logits, labels = torch.randn(64, 32).bfloat16(), torch.randint(0, 32, (64,))
    fp32 = F.cross_entropy(logits.float(), labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cpu = F.cross_entropy(logits, labels)
    with torch.autocast("npusim", dtype=torch.bfloat16):
        npu = F.cross_entropy(logits.to("npusim"), labels.to("npusim")).cpu()
    assert cpu.dtype == npu.dtype == torch.float32
    assert torch.equal(cpu, fp32)  # the CPU: all fp32
    assert not torch.equal(npu, fp32)  # npusim: bf16 log_softmax, as CUDA
    torch.testing.assert_close(npu, fp32, rtol=5e-3, atol=0)


AGREE = {  # op: dtype it produces from fp32 inputs (bf16 for the unlisted ops) on both
    "linear": (lambda x, w: F.linear(x, w), torch.bfloat16),
    "matmul": (lambda x, w: x @ w, torch.bfloat16),
    "bmm": (lambda x, w: torch.bmm(x[None], w[None]), torch.bfloat16),
    "addmm": (lambda x, w: torch.addmm(x, x, w), torch.bfloat16),
    "einsum": (lambda x, w: torch.einsum("ij,jk->ik", x, w), torch.bfloat16),
    "sdpa": (lambda x, w: F.scaled_dot_product_attention(x[None, None], w[None, None], w[None, None]),
             torch.bfloat16),
    "mse_loss": (lambda x, w: F.mse_loss(x.bfloat16(), w), torch.float32),
    "cross_entropy": (lambda x, w: F.cross_entropy(x.bfloat16(), torch.zeros(4, dtype=torch.long, device=x.device)),
                      torch.float32),
    "gelu": (lambda x, w: F.gelu(x.bfloat16()), torch.bfloat16),
    "relu": (lambda x, w: F.relu(x.bfloat16()), torch.bfloat16),
}
DIFFER = {  # op: (npusim dtype, CPU dtype)
    "softmax": (lambda x, w: F.softmax(x.bfloat16(), -1), torch.float32, torch.bfloat16),
    "log_softmax": (lambda x, w: F.log_softmax(x.bfloat16(), -1), torch.float32, torch.bfloat16),
    "layer_norm": (lambda x, w: F.layer_norm(x.bfloat16(), (4,)), torch.float32, torch.bfloat16),
    "rms_norm": (lambda x, w: F.rms_norm(x.bfloat16(), (4,)), torch.float32, torch.bfloat16),
    "exp": (lambda x, w: torch.exp(x.bfloat16()), torch.float32, torch.bfloat16),
    "rsqrt": (lambda x, w: torch.rsqrt(x.bfloat16().abs() + 1), torch.float32, torch.bfloat16),
    "pow": (lambda x, w: x.bfloat16().pow(2), torch.float32, torch.bfloat16),
    "sum": (lambda x, w: x.bfloat16().sum(), torch.float32, torch.bfloat16),
    "cumsum": (lambda x, w: x.bfloat16().cumsum(0), torch.float32, torch.bfloat16),
    "mv": (lambda x, w: torch.mv(x, w[0]), torch.bfloat16, torch.float32),
}


def autocast_dtype(fn, device):
    x, w = torch.randn(4, 4, device=device), torch.randn(4, 4, device=device)
    with torch.autocast(device, dtype=torch.bfloat16):
        return fn(x, w).dtype


@pytest.mark.parametrize("op", AGREE)
def test_op_lists_agree(op):
    fn, dtype = AGREE[op]
    assert (autocast_dtype(fn, "npusim"), autocast_dtype(fn, "cpu")) == (dtype, dtype)


@pytest.mark.parametrize("op", DIFFER)
def test_op_lists_differ_where_documented(op):
    fn, npusim, cpu = DIFFER[op]
    assert (autocast_dtype(fn, "npusim"), autocast_dtype(fn, "cpu")) == (npusim, cpu)
