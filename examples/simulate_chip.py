"""Predicts one transformer training step's time on simulated chips.

    python examples/simulate_chip.py [--chips a100-sxm4-80gb h100-sxm5-80gb] [--trace-dir DIR]

The step really runs (on the host, through npusim); every kernel, copy and collective
advances its stream's simulated clock by the chip's roofline cost. For each chip this prints
the predicted step time, the model FLOP utilisation it implies, a per-op breakdown and the
path of a Chrome trace (chrome://tracing or ui.perfetto.dev) of the step in simulated time.
"""
import argparse
import os
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_npu_sim import simulation as sim
from torch_npu_sim.simulation import trace


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, s, d))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, dim, heads, layers, seq):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(seq, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens):
        x = self.tok(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def model_flops(params, tokens, layers, seq, dim):
    """Training FLOPs per step: 6 per parameter per token plus attention (Megatron-LM's count)."""
    return 6 * params * tokens + 12 * layers * seq * dim * tokens


def op_class(name):
    if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm") or "attention" in name:
        return "matmul/attention"
    if name == "memcpy":
        return "copies"
    if name in ("all_reduce", "all_gather", "reduce_scatter", "broadcast"):
        return "collectives"
    return "memory-bound ops"


def run_step(model, opt, tokens, targets, dtype):
    with torch.autocast("npusim", dtype=dtype, enabled=dtype != torch.float32):
        logits = model(tokens)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def simulate(chip, args):
    spec = sim.set_chip(chip)
    sim.enable()
    torch.manual_seed(0)
    device = torch.device("npusim", 0)
    model = GPT(args.vocab, args.dim, args.heads, args.layers, args.seq).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(args.vocab, (args.batch, args.seq), device=device)
    targets = torch.randint(args.vocab, (args.batch, args.seq), device=device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    run_step(model, opt, tokens, targets, dtype)  # warm-up: optimizer state allocated
    torch.npusim.synchronize()
    sim.reset()
    with trace.record_activities() as recording:
        loss = run_step(model, opt, tokens, targets, dtype)
        loss.item()  # the host waits for the step
    step_s = sim.sim_time()
    params = sum(p.numel() for p in model.parameters())
    flops = model_flops(params, args.batch * args.seq, args.layers, args.seq, args.dim)
    peak = spec.peak_flops_bf16 if args.dtype == "bf16" else spec.peak_flops_fp32
    stats = sim.breakdown()
    classes = {}
    for s in stats:
        classes[op_class(s.name)] = classes.get(op_class(s.name), 0) + s.sim_ns
    path = trace.write_chrome_trace(os.path.join(args.trace_dir, f"simulate_chip_{chip}.json"), recording.activities)
    print(f"\n=== {chip}: predicted step time {step_s * 1e3:.3f} ms "
          f"({flops / step_s / 1e12:.1f} TFLOP/s, model FLOP utilisation {100 * flops / step_s / peak:.1f}%) ===")
    total = sum(classes.values()) or 1
    print("by class: " + ", ".join(f"{k} {v / 1e6:.3f} ms ({100 * v / total:.0f}%)" for k, v in sorted(classes.items(), key=lambda kv: -kv[1])))
    print(sim.format_breakdown(stats, top=args.top))
    print(f"Chrome trace (simulated time): {path}")
    sim.disable()
    return step_s


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chips", nargs="+", default=["a100-sxm4-80gb", "h100-sxm5-80gb"],
                        help=f"presets ({', '.join(sim.PRESETS)}) or JSON spec paths")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16", help="autocast dtype of the step")
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--top", type=int, default=12, help="ops shown in each breakdown")
    parser.add_argument("--trace-dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    print(f"GPT: {args.layers} layers, dim {args.dim}, {args.heads} heads, vocab {args.vocab}, "
          f"batch {args.batch} x seq {args.seq}, {args.dtype} autocast, AdamW")
    times = {chip: simulate(chip, args) for chip in args.chips}
    base = args.chips[0]
    print("\npredicted step times: " + ", ".join(f"{c} {t * 1e3:.3f} ms ({times[base] / t:.2f}x {base})" for c, t in times.items()))


if __name__ == "__main__":
    main()
