"""Inductor registration for npusim: C++ kernels on npusim memory, npusim buffers.

Inductor's C++ (CPU) kernels take raw pointers, and npusim memory is host-addressable
in CPU mode, so the same fused loops run on npusim buffers with no copy. What differs
from CPU is the wrapper: it allocates buffers from the npusim caching allocator (so
``torch.npusim.memory_allocated()`` sees them) on the buffer's own device index.
"""
from __future__ import annotations

import functools
import unittest.mock

import torch
from torch._inductor.codegen.common import (
    DeviceOpOverrides,
    get_scheduling_for_device,
    register_backend_for_device,
    register_device_op_overrides,
)
from torch._inductor.codegen.cpp import CppScheduling
from torch._inductor.codegen.wrapper import PythonWrapperCodegen, SubgraphPythonWrapperCodegen
from torch._inductor.custom_graph_pass import CustomGraphModulePass, get_hash_for_files
from torch._inductor.virtualized import V

from .. import _private_torch
from . import kernel_cost as _kernel_cost
from .flex_attention import install_lowering as _install_flex_lowering

DEVICE_TYPE = "npusim"
_CPU = torch.device("cpu")


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


class NpuSimScheduling(CppScheduling):
    """Inductor's C++ scheduling and kernels, unchanged: they run on npusim buffers.

    While it generates kernel code the current device reads as CPU, because the kernel
    *is* a CPU kernel: Inductor picks its codegen rules (dtype propagation, kernel call
    form) from the current device type, and would otherwise take GPU ones. Buffers keep
    their npusim device, so allocation and everything outside the kernels is unchanged.
    """

    def codegen_node(self, node) -> None:
        with V.graph.set_current_device(_CPU):
            super().codegen_node(node)

    def codegen_template(self, *args, **kwargs):
        with V.graph.set_current_device(_CPU):
            return super().codegen_template(*args, **kwargs)

    def flush(self) -> None:
        with V.graph.set_current_device(_CPU):
            super().flush()

    def define_kernel(self, src_code, nodes, kernel_args=None):
        kernel_name = super().define_kernel(src_code, nodes, kernel_args)
        # the kernel's call comes next: the wrapper attaches the cost to it
        args = self.kernel_group.args if kernel_args is None else kernel_args
        V.graph.wrapper_code.npusim_next_kernel_cost = (kernel_name, _kernel_cost.fused_kernel_cost(nodes, args))
        return kernel_name


class _NpuSimWrapperMixin:
    def write_header(self) -> None:
        super().write_header()
        if not isinstance(self, SubgraphPythonWrapperCodegen):
            self.imports.writeline("from torch_npu_sim.compile._runtime import empty_strided_npusim, npusim_kernel_call")

    def make_allocation(self, name, device, dtype, shape, stride, allocation_shape=None, is_pinned=False):
        if device.type != DEVICE_TYPE or torch._inductor.config.test_configs.track_memory_lifecycle:
            return super().make_allocation(name, device, dtype, shape, stride, allocation_shape, is_pinned)
        # Explicit index: npusim is no "GPU" to Inductor, so no device guard is emitted,
        # and a buffer must not land on whichever device happens to be current.
        if allocation_shape is None:
            allocation_shape = shape
        shape_code = self.codegen_python_shape_tuple(shape)
        allocation_shape_code = self.codegen_python_shape_tuple(allocation_shape)
        stride_code = self.codegen_python_shape_tuple(stride)
        index = device.index if device.index is not None else 0
        out = f"{name} = empty_strided_npusim({allocation_shape_code}, {stride_code}, {dtype}, {index})"
        if shape_code != allocation_shape_code:
            out += f".as_strided({shape_code}, {stride_code})"
        return out

    def wrap_kernel_call(self, name, call_args):
        # a C++ kernel reads npusim memory through raw pointers: it is a kernel launch, so
        # it runs inside a device-access scope (NPUSIM_PROTECT_MEMORY=1 checks that)
        # the kernel is named for the simulated clock's breakdown (its own name is "kernel")
        call_args = [name, *call_args, f"name={name!r}"]
        cost_name, cost = getattr(self, "npusim_next_kernel_cost", (None, None))
        self.npusim_next_kernel_cost = (None, None)
        if cost is not None and cost_name == name:
            # (flops, bytes, compute class): evaluated at each call, so symbolic sizes are the call's
            call_args.append(f"cost=({self.codegen_python_sizevar(cost.flops)}, {self.codegen_python_sizevar(cost.nbytes)}, {cost.compute_class})")
        return f"npusim_kernel_call({', '.join(call_args)}){self.ending}"

    def _generate_kernel_call_helper(self, kernel_name, call_args, *, device=None, triton=True, **kwargs):
        device = device or V.graph.get_current_device_or_throw()
        if device.type == DEVICE_TYPE and not triton:
            device = _CPU  # a C++ kernel, called with raw pointers exactly as on CPU
        return super()._generate_kernel_call_helper(kernel_name, call_args, device=device, triton=triton, **kwargs)


class NpuSimSubgraphWrapperCodegen(_NpuSimWrapperMixin, SubgraphPythonWrapperCodegen):
    pass


class NpuSimWrapperCodegen(_NpuSimWrapperMixin, PythonWrapperCodegen):
    @staticmethod
    def create(is_subgraph, subgraph_name, parent_wrapper, partition_signatures=None):
        if is_subgraph:
            assert subgraph_name is not None and parent_wrapper is not None
            return NpuSimSubgraphWrapperCodegen(subgraph_name, parent_wrapper, partition_signatures)
        return NpuSimWrapperCodegen()


_SCHEDULER_APIS = ("torch._inductor.scheduler:BaseSchedulerNode.is_cpu",)


def _patch_scheduler_is_cpu() -> None:
    """Make ``BaseSchedulerNode.is_cpu()`` true for npusim nodes.

    The scheduler skips loop reordering, inversion and reindexing for "CPU" nodes
    because the C++ backend cannot codegen their results (it crashes on the SIMD-style
    node groups they assume). It asks ``node.is_cpu()``, which tests the device type,
    and no registration or config can say "this device uses the C++ backend". The
    method has no other callers.
    """
    from torch._inductor.scheduler import BaseSchedulerNode

    if getattr(BaseSchedulerNode.is_cpu, "_npusim_patched", False):
        return
    _private_torch.require_checked_version(
        _SCHEDULER_APIS, "Inductor on npusim is refused; use torch.compile(backend='aot_eager') meanwhile")

    def is_cpu(self) -> bool:
        device = self.get_device()
        return device is not None and device.type in ("cpu", DEVICE_TYPE)

    is_cpu._npusim_patched = True
    BaseSchedulerNode.is_cpu = is_cpu


_CPP_TEMPLATE_APIS = ("torch._inductor.codegen.cpp_template:CppTemplate.generate",
                      "torch._inductor.graph:GraphLowering")


def _patch_cpp_template_generate() -> None:
    """Let Inductor's C++ templates (flex attention, GEMM, ...) generate code for npusim.

    ``CppTemplate.generate`` renders the kernel with the output's device as the current
    device, and Inductor picks the backend of the code it generates (C++ or Triton, and
    with it the dtype rules of indirect loads) from the current device type. For an npusim
    output the kernel is a CPU kernel, so it renders with the CPU as the current device;
    the output buffer keeps its npusim layout. (Rendering again at scheduling time runs
    under ``NpuSimScheduling.codegen_template``, which does the same.)
    """
    from torch._inductor.codegen.cpp_template import CppTemplate

    original = CppTemplate.generate
    if getattr(original, "_npusim_patched", False):
        return
    _private_torch.require_checked_version(
        _CPP_TEMPLATE_APIS, "Inductor's C++ templates (flex attention) are refused on npusim")

    @functools.wraps(original)
    def generate(self, **kwargs):
        if self.layout.device.type != DEVICE_TYPE:
            return original(self, **kwargs)
        graph = V.graph
        set_current_device = graph.set_current_device

        def set_cpu_for_npusim(device):
            return set_current_device(_CPU if device is not None and device.type == DEVICE_TYPE else device)

        with unittest.mock.patch.object(graph, "set_current_device", set_cpu_for_npusim):
            return original(self, **kwargs)

    generate._npusim_patched = True
    CppTemplate.generate = generate


class _CodegenFingerprint(CustomGraphModulePass):
    """A pass that changes nothing, registered so that Inductor's compiled-graph cache keys
    include this backend's code generation: a wrapper cached before a change to it (the
    kernels' costs, say) is generated again instead of served stale."""

    def __call__(self, gm) -> None:
        pass

    def uuid(self) -> bytes:
        return get_hash_for_files((__file__, _kernel_cost.__file__))


def register() -> None:
    _patch_scheduler_is_cpu()
    _patch_cpp_template_generate()
    register_device_op_overrides(DEVICE_TYPE, NpuSimDeviceOpOverrides())
    if get_scheduling_for_device(DEVICE_TYPE) is not NpuSimScheduling:
        # No C++ wrapper (cpp_wrapper=True): its AOTI shims know CPU and CUDA memory only.
        register_backend_for_device(DEVICE_TYPE, NpuSimScheduling, NpuSimWrapperCodegen,
                                    device_custom_pass=_CodegenFingerprint())
    _install_flex_lowering()
