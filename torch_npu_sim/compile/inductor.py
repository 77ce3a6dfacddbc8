"""Inductor registration for npusim: C++ kernels on npusim memory, npusim buffers.

Registered with ``register_backend_for_device`` when ``torch._inductor.codegen.common``
is imported. The registered scheduling and wrapper classes are light stand-ins that
import the C++ backend on first use: at registration time Inductor is itself half
imported, and importing its C++ backend from there would be circular.
"""
from __future__ import annotations

import functools

import torch
from torch._inductor.codegen.common import (
    DeviceOpOverrides,
    get_scheduling_for_device,
    register_backend_for_device,
    register_device_op_overrides,
)

DEVICE_TYPE = "npusim"


class NpuSimDeviceOpOverrides(DeviceOpOverrides):
    """Python snippets the wrapper emits for device and stream handling."""

    def import_get_raw_stream_as(self, name: str) -> str:
        return f"from torch_npu_sim.compile.device_interface import NpuSimInterface\n{name} = NpuSimInterface.get_raw_stream"

    def set_device(self, device_idx: int) -> str:
        return f"torch.npusim.set_device({device_idx})"

    def synchronize(self) -> str:
        return "torch.npusim.synchronize()"

    def device_guard(self, device_idx: int) -> str:
        return f"torch.npusim.device({device_idx})"


class NpuSimScheduling:
    """Inductor scheduling for npusim: Inductor's C++ (CPU) kernels, on npusim memory."""

    def __new__(cls, scheduler):
        return _codegen().Scheduling(scheduler)


class NpuSimPythonWrapperCodegen:
    """Python wrapper codegen for npusim graphs (see ``_codegen`` for the real class)."""

    @staticmethod
    def create(is_subgraph, subgraph_name, parent_wrapper, partition_signatures=None):
        return _codegen().PythonWrapperCodegen.create(is_subgraph, subgraph_name, parent_wrapper, partition_signatures)


def register() -> None:
    register_device_op_overrides(DEVICE_TYPE, NpuSimDeviceOpOverrides())
    if get_scheduling_for_device(DEVICE_TYPE) is not NpuSimScheduling:
        # No C++ wrapper (cpp_wrapper=True): its AOTI shims know CPU and CUDA memory only.
        register_backend_for_device(DEVICE_TYPE, NpuSimScheduling, NpuSimPythonWrapperCodegen)


@functools.cache
def _codegen():
    from . import _codegen as module

    return module
