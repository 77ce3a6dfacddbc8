"""What profiling costs on npusim, against profiling the same program on CPU.

One small program (a 3-layer MLP forward on 64x256 inputs, 20 steps: ~200 ops) runs on
CPU and on npusim, unprofiled and under each profiler:

  kineto   torch.profiler.profile(activities=[CPU, <device>])  (PrivateUse1 on npusim)
  legacy   torch.autograd.profiler.profile(use_device="npusim")  (runtime events per op; on CPU
           the same profiler without use_device)

Each row is the median seconds of one profiled run (session start, the program, its
synchronisation, the session's processing up to key_averages()). The goal is judged on the
overhead ratio, per profiler: (profiled / unprofiled on npusim) / (profiled / unprofiled on CPU),
within 2x.
All cases alternate round by round in the same process.

    python benchmarks/bench_profiler.py [--rounds 7] [--steps 20]
"""
import argparse
import os
import statistics
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table  # noqa: E402

GOAL = 2.0


def make_program(device: str, steps: int):
    torch.manual_seed(0)
    layers = [torch.nn.Linear(256, 256).to(device) for _ in range(3)]
    x = torch.randn(64, 256, device=device)

    def program():
        with torch.no_grad():
            for _ in range(steps):
                h = x
                for layer in layers:
                    h = torch.relu(layer(h))
                h.sum()
        if device == "npusim":
            torch.npusim.synchronize()

    return program


def unprofiled(program):
    program()


def kineto(device):
    activity = ProfilerActivity.PrivateUse1 if device == "npusim" else ProfilerActivity.CPU

    def run(program):
        with profile(activities=sorted({ProfilerActivity.CPU, activity}, key=lambda a: a.value)) as prof:
            program()
        prof.key_averages()

    return run


def legacy(device):
    use_device = "npusim" if device == "npusim" else None

    def run(program):
        with torch.autograd.profiler.profile(use_device=use_device) as prof:
            program()
        prof.key_averages()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    programs = {device: make_program(device, args.steps) for device in ("cpu", "npusim")}
    cases = {
        ("cpu", "unprofiled"): unprofiled,
        ("cpu", "kineto"): kineto("cpu"),
        ("cpu", "legacy"): legacy("cpu"),
        ("npusim", "unprofiled"): unprofiled,
        ("npusim", "kineto"): kineto("npusim"),
        ("npusim", "legacy"): legacy("npusim"),
    }
    samples = {case: [] for case in cases}
    for case, run in cases.items():  # warm-up: first sessions initialise kineto
        run(programs[case[0]])
    for _ in range(args.rounds):
        for case, run in cases.items():
            start = time.perf_counter()
            run(programs[case[0]])
            samples[case].append(time.perf_counter() - start)
    median = {case: statistics.median(values) for case, values in samples.items()}

    def overhead(device, mode):
        return median[(device, mode)] / median[(device, "unprofiled")]

    rows = [(device, mode, f"{median[(device, mode)] * 1e3:.1f}", f"{overhead(device, mode):.2f}x")
            for device, mode in cases]
    print_table(f"profiling a {args.steps}-step MLP forward (median of {args.rounds} rounds)", rows,
                ["device", "profiler", "ms", "vs unprofiled"])
    for mode in ("kineto", "legacy"):
        ratio = overhead("npusim", mode) / overhead("cpu", mode)
        verdict = "meets" if ratio <= GOAL else "misses"
        print(f"{mode}: npusim overhead / CPU overhead: {ratio:.2f} ({verdict} the goal of {GOAL:.0f}x)")
    print(f"npusim kineto profiled / CPU kineto profiled: "
          f"{median[('npusim', 'kineto')] / median[('cpu', 'kineto')]:.2f}")


if __name__ == "__main__":
    main()
