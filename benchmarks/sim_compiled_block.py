"""Predicted time of a Llama-style transformer block, eager against torch.compile, on a
simulated chip (simulated time, not host time):

    python benchmarks/sim_compiled_block.py [--chip h100-sxm5-80gb] [--dim 1024] [--heads 8]
                                            [--seq 512] [--batch 2] [--top 8] [--buffer-rule]

One forward and backward of the block (RMSNorm, rotary embeddings, attention through
F.scaled_dot_product_attention, SwiGLU MLP; bf16) on npusim. Eager, every ATen op is a
launch charged its own bytes; compiled, Inductor fuses the elementwise work and each fused
kernel is charged its FLOPs and the bytes of its real inputs and outputs. With
--buffer-rule the compiled step is also charged by the earlier rule (bytes of every buffer a
kernel is passed, one op per element of the largest). Prints the times and the top ops of
each. A first run compiles (C++ kernels are cached for later runs).
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_npu_sim import simulation as sim
from torch_npu_sim.simulation import compiled as compiled_costs


# Dynamo cannot trace npusim's SDPA kernel choice with fake tensors, so attention runs as the
# same ATen kernel in both modes, between compiled graphs (a graph break each way)
attention_kernel = torch.compiler.disable(F.scaled_dot_product_attention)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # in fp32, as Llama does, then back to the activations' dtype
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class LlamaBlock(nn.Module):
    def __init__(self, dim, heads, seq, hidden=None):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        hidden = hidden or 256 * ((8 * dim // 3 + 255) // 256)  # Llama's SwiGLU width
        self.attention_norm, self.mlp_norm = RMSNorm(dim), RMSNorm(dim)
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(dim, dim, bias=False) for _ in range(4))
        self.w1, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        angles = torch.outer(torch.arange(seq).float(), inv_freq).repeat(1, 2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x):
        batch, seq, dim = x.shape
        h = self.attention_norm(x)
        q, k, v = (w(h).view(batch, seq, self.heads, self.head_dim).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
        cos, sin = self.cos[:seq].to(x.dtype), self.sin[:seq].to(x.dtype)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        attention = attention_kernel(q, k, v, is_causal=True)
        x = x + self.wo(attention.transpose(1, 2).reshape(batch, seq, dim))
        h = self.mlp_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


def step(block, x, grad_out):
    """One forward and backward; the simulated seconds it is charged and the breakdown."""
    for p in block.parameters():
        p.grad = None
    x.grad = None
    torch.npusim.synchronize()
    sim.reset()
    block(x).backward(grad_out)
    torch.npusim.synchronize()
    return sim.sim_time(), sim.breakdown()


def print_top(title, seconds, stats, top):
    print(f"\n{title}: {seconds * 1e3:.3f} ms simulated, {sum(s.count for s in stats)} launches")
    print(f"  {'op':<58} {'calls':>5} {'ms':>8} {'share':>6} {'MB':>9}")
    for s in stats[:top]:
        print(f"  {s.name[:58]:<58} {s.count:>5} {s.sim_ns / 1e6:>8.3f} {s.sim_ns / 1e9 / seconds:>6.1%} {s.bytes / 1e6:>9.1f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--chip", default="h100-sxm5-80gb")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--buffer-rule", action="store_true",
                        help="also charge the compiled step by the earlier rule (one more step)")
    args = parser.parse_args()

    torch.manual_seed(0)
    sim.set_chip(args.chip)
    sim.enable()
    dtype = torch.bfloat16
    block = LlamaBlock(args.dim, args.heads, args.seq).to("npusim", dtype)
    x = torch.randn(args.batch, args.seq, args.dim, device="npusim", dtype=dtype, requires_grad=True)
    grad_out = torch.randn_like(x)

    started = time.perf_counter()
    eager_s, eager_stats = step(block, x, grad_out)
    compiled_block = torch.compile(block, backend="npusim")
    # compiling launches nothing on npusim, so the first compiled step is charged as any other
    compiled_s, compiled_stats = step(compiled_block, x, grad_out)
    buffer_rule_s = None
    if args.buffer_rule:
        compiled_costs.FUSION_AWARE = False
        try:
            buffer_rule_s, _ = step(compiled_block, x, grad_out)
        finally:
            compiled_costs.FUSION_AWARE = True

    print(f"Llama-style block, dim {args.dim}, {args.heads} heads, seq {args.seq}, batch {args.batch}, bf16, "
          f"forward + backward on {args.chip} (host time {time.perf_counter() - started:.0f} s)")
    print(f"  eager     {eager_s * 1e3:9.3f} ms")
    print(f"  compiled  {compiled_s * 1e3:9.3f} ms   eager / compiled = {eager_s / compiled_s:.2f}x")
    if buffer_rule_s is not None:
        print(f"  compiled, every kernel charged by the buffers it is passed: {buffer_rule_s * 1e3:.3f} ms")
    print_top("eager", eager_s, eager_stats, args.top)
    print_top("compiled", compiled_s, compiled_stats, args.top)


if __name__ == "__main__":
    main()
