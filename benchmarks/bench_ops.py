"""Eager ops on npusim against the same ops on the CPU, measured in the same run
(interleaved rounds, medians):

    python benchmarks/bench_ops.py

1-element add and add_ (the per-op overhead of the backend), a 512x512 matmul, a conv2d,
a softmax, and a small transformer block forward + backward. Large results come from
npusim's caching allocator, which reuses blocks where the CPU allocator maps fresh pages:
that is why a conv2d (MB-sized outputs) can be faster on npusim than on the CPU.
"""
import copy

import torch

from common import interleaved, print_table


def cases(device):
    torch.manual_seed(0)
    a, b = torch.ones(1, device=device), torch.ones(1, device=device)
    m1, m2 = torch.randn(512, 512, device=device), torch.randn(512, 512, device=device)
    conv = torch.nn.Conv2d(16, 32, 3, padding=1).to(device)
    image = torch.randn(8, 16, 32, 32, device=device)
    logits = torch.randn(256, 1024, device=device)
    torch.manual_seed(0)
    block = torch.nn.TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=512, dropout=0.0,
                                             batch_first=True).to(device)
    tokens = torch.randn(8, 64, 128, device=device)

    def transformer_step():
        block.zero_grad(set_to_none=True)
        block(tokens).sum().backward()

    return {
        "a + b (1 element)": (lambda: a + b, 20000, 1.5),
        "a.add_(b) (1 element)": (lambda: a.add_(b), 20000, 1.5),
        "torch.mm 512x512 fp32": (lambda: torch.mm(m1, m2), 200, 1.1),
        "conv2d 8x16x32x32, 3x3 -> 32": (lambda: conv(image), 100, None),
        "softmax 256x1024": (lambda: logits.softmax(-1), 500, None),
        "transformer block fwd+bwd (8x64x128)": (transformer_step, 20, 1.1),
    }


def main():
    cpu, npu = cases("cpu"), cases("npusim")
    rows = []
    for name in cpu:
        fn_cpu, calls, goal = cpu[name]
        fn_npu = npu[name][0]
        t = interleaved({"cpu": fn_cpu, "npusim": fn_npu}, calls=calls)
        ratio = t["npusim"] / t["cpu"]
        met = "-" if goal is None else "yes" if ratio <= goal else "NO"
        rows.append([name, f"{t['cpu'] * 1e6:.2f} us", f"{t['npusim'] * 1e6:.2f} us", f"{ratio:.2f}x",
                     "-" if goal is None else f"<= {goal}x", met])
    print_table(f"eager ops, npusim vs cpu (torch {torch.__version__}, {torch.get_num_threads()} threads; "
                "medians of 7 interleaved rounds)", rows, ["op", "cpu", "npusim", "npusim/cpu time", "goal", "met"])


if __name__ == "__main__":
    main()
