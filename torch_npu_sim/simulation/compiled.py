"""Simulated time of Inductor-compiled kernels on npusim.

Compiled C++ kernels read npusim memory directly (they are not ATen launches), so each call
is charged to the current stream here. Inductor's wrapper passes each kernel's figures,
worked out from what it fuses when it was generated (compile/kernel_cost.py): the FLOPs
of its fused loop bodies, and the bytes of the buffers it really reads and writes in
global memory (not the intermediates fused away). Matmuls and convolutions stay ATen calls,
costed by their own formulas.

A call without figures (a kernel whose size expressions the call cannot evaluate, a C++
template, an ATen fallback through the same helper) is charged by its arguments: bytes of
every npusim buffer passed, one operation per element of the largest. Setting
``FUSION_AWARE = False`` charges every call that way, for comparison.
"""
from __future__ import annotations

import functools

import torch

_KERNEL = 0  # npusimActivityKernel

# False: ignore the compile-time figures and charge every kernel by its arguments
FUSION_AWARE = True


def kernel_cost(args) -> tuple[float, float, int, torch.device | None]:
    """(flops, bytes, compute class, device) of a compiled kernel's arguments."""
    flops = nbytes = 0.0
    compute_class = None
    device = None
    for a in args:
        if isinstance(a, torch.Tensor) and a.device.type == "npusim":
            n = a.numel()
            nbytes += n * a.element_size()
            flops = max(flops, float(n))
            device = device or a.device
            if compute_class is None:
                compute_class = 1 if a.dtype in (torch.bfloat16, torch.float16) else 2 if a.dtype in (torch.int8, torch.uint8) else 0
    return flops, nbytes, compute_class or 0, device


def _npusim_device(args) -> torch.device | None:
    for a in args:
        if isinstance(a, torch.Tensor) and a.device.type == "npusim":
            return a.device
    return None


def kernel_ns(flops: float, nbytes: float, compute_class: int) -> int:
    """What the runtime charges a kernel of this cost on the current chip (its roofline, with the
    per-op-class efficiency when calibrated efficiency is on): one formula, the runtime's."""
    return int(torch.ops.npusim_sim.kernel_time_ns(flops, nbytes, compute_class, 0))  # op class: other


def _never() -> bool:
    return False


@functools.cache
def _cost_only_query():
    """``torch.ops.npusim_sim.cost_only`` (charge kernels without running them), or a query
    that says no where the runtime has no such mode; looked up once."""
    ops = torch.ops.npusim_sim
    return ops.cost_only if hasattr(ops, "cost_only") else _never


def costed(call):
    """`call(kernel, *args)` that also charges the kernel to the stream while the cost model is on.

    ``cost=(flops, bytes, compute class)``, when given, is what the kernel computes and moves;
    ``name`` names it in the breakdown.
    """
    ops = torch.ops.npusim_sim

    def npusim_kernel_call(kernel, *args, cost=None, name=None):
        out = None if _cost_only_query()() else call(kernel, *args)
        if ops.cost_model_enabled():
            if cost is not None and FUSION_AWARE:
                (flops, nbytes, compute_class), device = cost, _npusim_device(args)
            else:
                flops, nbytes, compute_class, device = kernel_cost(args)
            if device is not None:
                stream = torch.npusim.current_stream(device)
                name = "inductor::" + (name or getattr(kernel, "__name__", "kernel"))
                ops.charge(stream.stream_id, stream.device_index, stream.device_type, _KERNEL, name, float(nbytes),
                           kernel_ns(float(flops), float(nbytes), compute_class))
        return out

    return npusim_kernel_call
