"""torch.compile on npusim against Inductor on CPU, same graphs, same run.

For each workload four variants run interleaved (eager CPU, compiled CPU, eager npusim,
compiled npusim), each timed over many rounds; the table shows medians and the ratios
that matter:

* ``npusim/cpu compiled``: compiled npusim time over compiled CPU time (goal <= 1.1)
* ``speedup``: eager time over compiled time on each device (goal: npusim >= CPU)

    python benchmarks/bench_compile.py [--rounds 30] [--quick] [--cpu-malloc-cache]

npusim buffers come from a caching allocator, CPU buffers from glibc malloc, which
returns large blocks to the OS and page-faults them back in on every call. That alone
makes npusim eager faster than CPU eager on big activations. ``--cpu-malloc-cache``
reruns with glibc told to keep freed memory (MALLOC_MMAP_THRESHOLD_/TRIM_THRESHOLD_),
which isolates what compiling gains from what caching memory gains.

Cold compile time: the first compiled call in a fresh interpreter with an empty
Inductor cache (tracing, codegen and g++), measured apart from the timing runs.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time

if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="npusim-bench-inductor-")

import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "compile"))
from models import TransformerBlock, memory_bound_chain  # noqa: E402


def sync(device: str) -> None:
    if device == "npusim":
        torch.npusim.synchronize()


def transformer_inference(device, dim, seq, batch):
    torch.manual_seed(0)
    model = TransformerBlock(dim=dim, heads=8).to(device).eval()
    x = torch.randn(batch, seq, dim, device=device)

    def make(compile_fn):
        fn = compile_fn(model)

        def run():
            with torch.no_grad():
                return fn(x)
        return run
    return make


def transformer_training(device, dim, seq, batch):
    torch.manual_seed(0)
    model = TransformerBlock(dim=dim, heads=8).to(device)
    x = torch.randn(batch, seq, dim, device=device)

    def make(compile_fn):
        local = copy.deepcopy(model)
        fn = compile_fn(local)

        def run():
            local.zero_grad(set_to_none=True)
            loss = fn(x).square().mean()
            loss.backward()
            return loss
        return run
    return make


def chain(device, rows, width):
    torch.manual_seed(0)
    x, residual = torch.randn(2, rows, width, device=device).unbind(0)
    bias, weight, norm_bias = torch.randn(3, width, device=device).unbind(0)

    def make(compile_fn):
        fn = compile_fn(memory_bound_chain)
        return lambda: fn(x, bias, residual, weight, norm_bias)
    return make


def compile_for(device):
    backend = "npusim" if device == "npusim" else "inductor"
    return lambda fn: torch.compile(fn, backend=backend)


def eager(fn):
    return fn


def first_call_seconds(run, device) -> float:
    start = time.perf_counter()
    run()
    sync(device)
    return time.perf_counter() - start


def cold_compile_seconds(workload: int, device: str, quick: bool) -> float:
    """First compiled call in a fresh interpreter with an empty compile cache."""
    with tempfile.TemporaryDirectory(prefix="npusim-bench-cold-") as cache:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
        command = [sys.executable, os.path.abspath(__file__), "--cold-only", str(workload), device]
        out = subprocess.run(command + (["--quick"] if quick else []), env=env, capture_output=True, text=True,
                             timeout=900, check=True)
        return float(out.stdout.strip().splitlines()[-1])


def bench(name, builder, rounds, iters):
    variants = {}
    for device in ("cpu", "npusim"):
        make = builder(device)
        variants[f"eager {device}"] = (device, make(eager))
        compiled = make(compile_for(device))
        first_call_seconds(compiled, device)
        variants[f"compiled {device}"] = (device, compiled)
    for device, run in variants.values():  # warm up allocator caches and autograd
        for _ in range(3):
            run()
        sync(device)
    samples = {key: [] for key in variants}
    for _ in range(rounds):  # interleaved, so drift and noise hit every variant alike
        for key, (device, run) in variants.items():
            start = time.perf_counter()
            for _ in range(iters):
                run()
            sync(device)
            samples[key].append((time.perf_counter() - start) / iters)
    med = {key: statistics.median(values) for key, values in samples.items()}
    return {
        "name": name,
        "ms": {key: value * 1e3 for key, value in med.items()},
        "npusim_over_cpu_compiled": med["compiled npusim"] / med["compiled cpu"],
        "speedup_cpu": med["eager cpu"] / med["compiled cpu"],
        "speedup_npusim": med["eager npusim"] / med["compiled npusim"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="small sizes and few rounds (smoke run)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold compile measurements")
    parser.add_argument("--cold-only", nargs=2, metavar=("WORKLOAD", "DEVICE"), help=argparse.SUPPRESS)
    parser.add_argument("--cpu-malloc-cache", action="store_true",
                        help="make glibc malloc keep freed memory, like a caching allocator")
    args = parser.parse_args()
    if args.cpu_malloc_cache and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(32 * 2**20), MALLOC_TRIM_THRESHOLD_=str(2**34))
        os.execve(sys.executable, [sys.executable, *sys.argv], env)  # malloc reads these at start-up
    rounds = 5 if args.quick else args.rounds
    dim, seq, batch = (64, 32, 2) if args.quick else (256, 128, 4)
    rows, width = (256, 256) if args.quick else (8192, 512)
    workloads = [
        ("transformer block, inference", lambda d: transformer_inference(d, dim, seq, batch), 5),
        ("transformer block, training step", lambda d: transformer_training(d, dim, seq, batch), 2),
        ("bias+gelu+residual+layernorm+softmax", lambda d: chain(d, rows, width), 5),
    ]
    if args.cold_only:
        workload, device = int(args.cold_only[0]), args.cold_only[1]
        print(first_call_seconds(workloads[workload][1](device)(compile_for(device)), device))
        return
    malloc = "glibc malloc keeps freed memory" if "MALLOC_MMAP_THRESHOLD_" in os.environ else "default glibc malloc"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {rounds} interleaved rounds, medians; "
          f"CPU buffers: {malloc}")
    print(f"transformer: dim={dim} seq={seq} batch={batch} heads=8; chain: [{rows}, {width}] fp32\n")
    header = (f"{'workload':<38} {'eager cpu':>10} {'comp cpu':>10} {'eager npu':>10} {'comp npu':>10} "
              f"{'npu/cpu comp':>13} {'speedup cpu':>12} {'speedup npu':>12} {'cold cpu':>9} {'cold npu':>9}")
    print(header)
    print("-" * len(header))
    for index, (name, builder, iters) in enumerate(workloads):
        r = bench(name, builder, rounds, iters)
        r["cold_s"] = {device: float("nan") if args.no_cold else cold_compile_seconds(index, device, args.quick)
                       for device in ("cpu", "npusim")}
        ms = r["ms"]
        print(f"{name:<38} {ms['eager cpu']:>8.3f}ms {ms['compiled cpu']:>8.3f}ms {ms['eager npusim']:>8.3f}ms "
              f"{ms['compiled npusim']:>8.3f}ms {r['npusim_over_cpu_compiled']:>12.2f}x {r['speedup_cpu']:>11.2f}x "
              f"{r['speedup_npusim']:>11.2f}x {r['cold_s']['cpu']:>8.1f}s {r['cold_s']['npusim']:>8.1f}s", flush=True)
    print("\ngoals: npu/cpu comp <= 1.10x; speedup npu >= speedup cpu. "
          "cold = first call with an empty compile cache (trace + codegen + g++).")


if __name__ == "__main__":
    main()
