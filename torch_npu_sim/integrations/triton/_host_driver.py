"""A triton driver for hosts without a GPU, so that ``triton.autotune`` can time configs.

``triton.autotune`` times each config with ``driver.active.get_benchmarker()``; with no
GPU triton has no active driver at all ("0 active drivers") and autotuning fails before
the first launch. This driver is made active only in that case: it times interpreted
launches with the host clock (the npusim work they do is synchronous).
"""
from __future__ import annotations

import statistics
import time

import torch
from triton.backends.driver import DriverBase
from triton.runtime.driver import driver

# Interpreted launches take milliseconds to seconds: a few timed runs are enough to rank configs.
BENCH_RUNS = 3


def host_do_bench(kernel_call, quantiles=None, return_mode="mean", runs=BENCH_RUNS, **_ignored):
    """``triton.testing.do_bench`` timed on the host clock, in milliseconds (one warm-up run)."""
    kernel_call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        kernel_call()
        times.append((time.perf_counter() - start) * 1e3)
    if quantiles:
        ordered = sorted(times)
        return [ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in quantiles]
    if return_mode == "all":
        return times
    return {"min": min, "max": max, "median": statistics.median}.get(return_mode, statistics.fmean)(times)


class HostInterpreterDriver(DriverBase):
    """Active only when no GPU driver is: the interpreter on npusim (host) memory."""

    @classmethod
    def is_active(cls) -> bool:
        return False  # never picked by triton's own driver discovery

    def map_python_to_cpp_type(self, ty: str) -> str:
        raise NotImplementedError("kernels on npusim run in triton's interpreter; nothing is compiled")

    def get_current_target(self):
        raise NotImplementedError("kernels on npusim run in triton's interpreter; there is no compile target")

    def get_active_torch_device(self):
        return torch.device("npusim", torch.npusim.current_device())

    def get_current_device(self) -> int:
        return torch.npusim.current_device()

    def get_current_stream(self, device=None) -> int:
        return torch.npusim.current_stream(device).stream_id

    def get_device_interface(self):
        return torch.npusim

    def get_benchmarker(self):
        return host_do_bench

    def get_empty_cache_for_benchmark(self):
        return torch.empty(0, dtype=torch.int8, device="npusim")

    def clear_cache(self, cache) -> None:
        return None


def install_if_no_gpu() -> bool:
    """Makes the host driver active when triton finds no GPU driver; True when it did."""
    try:
        driver.active  # noqa: B018 -- creates triton's own driver when a GPU is there
        return False
    except RuntimeError:  # "0 active drivers": no GPU
        driver.set_active(HostInterpreterDriver())
        return True
