"""Simulated time of Inductor-compiled kernels on npusim.

Compiled C++ kernels read npusim memory directly (they are not ATen launches), so each call
is charged to the current stream here: bytes of the buffers it is given, one operation per
element of its largest buffer (Inductor's C++ kernels are fused pointwise and reduction
loops; matmuls and convolutions stay ATen calls, costed by their own formulas).
"""
from __future__ import annotations

import torch

_KERNEL = 0  # npusimActivityKernel


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


def roofline_ns(flops: float, nbytes: float, compute_class: int) -> int:
    """The runtime's roofline on the current chip: max(flops / peak, bytes / bandwidth) + launch latency."""
    timing = torch.ops.npusim_sim.get_chip_timing()
    peak, bandwidth, latency_ns = timing[compute_class], timing[3], timing[4]
    return round(max(flops / peak, nbytes / bandwidth) * 1e9 + latency_ns)


def costed(call):
    """`call(kernel, *args)` that also charges the kernel to the stream while the cost model is on."""
    ops = torch.ops.npusim_sim

    def npusim_kernel_call(kernel, *args):
        out = call(kernel, *args)
        if ops.cost_model_enabled():
            flops, nbytes, compute_class, device = kernel_cost(args)
            if device is not None:
                stream = torch.npusim.current_stream(device)
                name = "inductor::" + getattr(kernel, "__name__", "kernel")
                ops.charge(stream.stream_id, stream.device_index, stream.device_type, _KERNEL, name, nbytes,
                           roofline_ns(flops, nbytes, compute_class))
        return out

    return npusim_kernel_call
