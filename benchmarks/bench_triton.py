"""Triton kernels on npusim (Triton's interpreter) against eager torch, same run.

For each canonical kernel of ``torch_npu_sim.integrations.triton.kernels`` three variants
run interleaved, round by round, and the table shows their medians:

* ``eager``: the same computation with torch ops on npusim (its native/CPU kernels);
* ``interpreter``: ``kernel[grid](...)`` on npusim tensors, in place (no host copy);
* ``stock interp.``: the same launch through Triton's own argument handling, which copies
  every argument's storage to the host and back (what npusim would cost without its path).

``interp/eager`` is the price of running a kernel through the interpreter; ``copy cost``
is stock over in-place interpreter time.

    python benchmarks/bench_triton.py [--rounds 5] [--quick] [--threads 1]

The interpreter runs a launch on one thread (NumPy, program after program), so eager
torch runs on one thread too by default (``--threads``).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import per_call_seconds, print_table  # noqa: E402

import torch_npu_sim.integrations.triton as npusim_triton  # noqa: E402

npusim_triton.enable()
from triton.runtime import interpreter  # noqa: E402

from torch_npu_sim.integrations.triton import kernels  # noqa: E402

DEVICE = "npusim"


@contextlib.contextmanager
def stock_argument_copies():
    """Triton's own host copies of the arguments, for comparison (the npusim path undone)."""
    executor = interpreter.GridExecutor
    patched = executor._init_args_hst, executor._restore_args_dev
    executor._init_args_hst, executor._restore_args_dev = (p.__wrapped__ for p in patched)
    try:
        yield
    finally:
        executor._init_args_hst, executor._restore_args_dev = patched


def stock(fn):
    def run():
        with stock_argument_copies():
            return fn()
    return run


def workloads(quick: bool) -> dict:
    n = 1 << (16 if quick else 18)
    rows, cols = (64, 512) if quick else (128, 1024)
    mm = 64 if quick else 128
    x, y = torch.randn(n, device=DEVICE), torch.randn(n, device=DEVICE)
    s = torch.randn(rows, cols, device=DEVICE)
    w, b = torch.randn(cols, device=DEVICE), torch.randn(cols, device=DEVICE)
    a, bm = torch.randn(mm, mm, device=DEVICE), torch.randn(mm, mm, device=DEVICE)
    v = torch.randint(0, 64, (n,), dtype=torch.int32, device=DEVICE)
    kernels.total(x)  # autotunes once, outside the timing
    return {
        f"vector add ({n})": (lambda: kernels.add(x, y, block=4096), lambda: x + y),
        f"softmax ({rows}x{cols})": (lambda: kernels.softmax(s), lambda: torch.softmax(s, -1)),
        f"layer norm ({rows}x{cols})": (lambda: kernels.layer_norm(s, w, b),
                                        lambda: torch.nn.functional.layer_norm(s, (cols,), w, b)),
        f"matmul tl.dot ({mm}^3)": (lambda: kernels.matmul(a, bm, 64, 64, 32), lambda: a @ bm),
        f"atomic histogram ({n})": (lambda: kernels.histogram(v, 64, block=4096),
                                    lambda: torch.bincount(v, minlength=64)),
        f"autotuned sum ({n})": (lambda: kernels.total(x), lambda: x.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for eager")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, (triton_fn, eager_fn) in workloads(args.quick).items():
        cases = {"eager": (eager_fn, 20), "interpreter": (triton_fn, 1), "stock": (stock(triton_fn), 1)}
        samples = {case: [] for case in cases}
        for fn, _ in cases.values():
            fn()  # warm-up
        for _ in range(args.rounds):
            for case, (fn, calls) in cases.items():
                samples[case].append(per_call_seconds(fn, calls))
        med = {case: statistics.median(values) for case, values in samples.items()}
        rows.append((name, f"{med['eager'] * 1e3:.3f}", f"{med['interpreter'] * 1e3:.1f}",
                     f"{med['stock'] * 1e3:.1f}", f"{med['interpreter'] / med['eager']:.0f}x",
                     f"{med['stock'] / med['interpreter']:.2f}x"))
    print_table(f"Triton interpreter on npusim vs eager torch (medians of {args.rounds} rounds, ms per call, "
                f"{torch.get_num_threads()} threads)", rows,
                ["kernel", "eager ms", "interpreter ms", "stock interp. ms", "interp/eager", "copy cost"])


if __name__ == "__main__":
    main()
