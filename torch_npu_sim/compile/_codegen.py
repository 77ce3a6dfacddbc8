"""The Inductor classes behind npusim's registration (imported on first compile)."""
from __future__ import annotations

import torch
from torch._inductor.codegen.cpp import CppScheduling
from torch._inductor.codegen.wrapper import PythonWrapperCodegen as _PythonWrapperCodegen
from torch._inductor.codegen.wrapper import SubgraphPythonWrapperCodegen as _SubgraphPythonWrapperCodegen
from torch._inductor.virtualized import V

_CPU = torch.device("cpu")


class Scheduling(CppScheduling):
    """Inductor's C++ scheduling: its kernels take raw pointers, and npusim memory is
    host-addressable, so the same fused loops run on npusim buffers."""


class _NpuSimWrapperMixin:
    def write_header(self) -> None:
        super().write_header()
        if not isinstance(self, _SubgraphPythonWrapperCodegen):
            self.imports.writeline("from torch_npu_sim.compile._runtime import empty_strided_npusim")

    def make_allocation(self, name, device, dtype, shape, stride, allocation_shape=None, is_pinned=False):
        if device.type != "npusim" or torch._inductor.config.test_configs.track_memory_lifecycle:
            return super().make_allocation(name, device, dtype, shape, stride, allocation_shape, is_pinned)
        # Explicit index: npusim is not a "GPU" to Inductor, so no device guard is
        # emitted, and the buffer must not land on whatever device is current.
        if allocation_shape is None:
            allocation_shape = shape
        shape_code = self.codegen_python_shape_tuple(shape)
        allocation_shape_code = self.codegen_python_shape_tuple(allocation_shape)
        stride_code = self.codegen_python_shape_tuple(stride)
        out = f"{name} = empty_strided_npusim({allocation_shape_code}, {stride_code}, {dtype}, {device.index or 0})"
        if shape_code != allocation_shape_code:
            out += f".as_strided({shape_code}, {stride_code})"
        return out

    def _generate_kernel_call_helper(self, kernel_name, call_args, *, device=None, triton=True, **kwargs):
        device = device or V.graph.get_current_device_or_throw()
        if device.type == "npusim" and not triton:
            device = _CPU  # a C++ kernel: called with raw pointers, as on CPU
        return super()._generate_kernel_call_helper(kernel_name, call_args, device=device, triton=triton, **kwargs)


class SubgraphPythonWrapperCodegen(_NpuSimWrapperMixin, _SubgraphPythonWrapperCodegen):
    pass


class PythonWrapperCodegen(_NpuSimWrapperMixin, _PythonWrapperCodegen):
    @staticmethod
    def create(is_subgraph, subgraph_name, parent_wrapper, partition_signatures=None):
        if is_subgraph:
            assert subgraph_name is not None and parent_wrapper is not None
            return SubgraphPythonWrapperCodegen(subgraph_name, parent_wrapper, partition_signatures)
        return PythonWrapperCodegen()
