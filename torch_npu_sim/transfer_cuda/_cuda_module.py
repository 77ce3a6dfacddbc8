"""torch.cuda served by torch.npusim: every public name of torch.cuda, classified.

The names come from torch.cuda itself (its ``__all__`` and its submodules), so a name torch
adds is classified too: served by torch.npusim's function of the same name (its device
arguments mapped), by a stated equivalent, left as torch's (exceptions, constants), or
replaced by a function or class that raises UnsupportedCudaFeature naming it.
"""
from __future__ import annotations

import contextlib
import functools
import types
from dataclasses import dataclass

import torch

from ._devices import map_args, map_kwargs
from ._proxies import stand_in, unsupported_class, unsupported_function

MAPPED = "mapped to torch.npusim (same name)"
EQUIVALENT = "mapped to an npusim equivalent"
RAISES = "raises UnsupportedCudaFeature"
LEFT = "left as torch's (generic object)"
SUBMODULE_MAPPED = "submodule mapped"
SUBMODULE_LEFT = "submodule not mapped (torch's own CUDA errors)"

# torch.cuda name -> (torch.npusim name, why they are the same thing)
_EQUIVALENTS = {
    "CUDAGraph": ("NPUGraph", "npusim's graph capture and replay with torch.cuda.CUDAGraph's API"),
    "memory_cached": ("memory_reserved", "torch's deprecated alias of memory_reserved"),
    "max_memory_cached": ("max_memory_reserved", "torch's deprecated alias of max_memory_reserved"),
    "reset_max_memory_allocated": ("reset_peak_memory_stats", "torch implements it as reset_peak_memory_stats"),
    "reset_max_memory_cached": ("reset_peak_memory_stats", "torch implements it as reset_peak_memory_stats"),
}
# submodules whose public API works once the rest is mapped, with why
_WORKING_SUBMODULES = {
    "amp": "its autocast and GradScaler subclass torch.amp's, whose CUDA device type is mapped",
    "nvtx": "ranges and marks become torch.profiler record_function ranges",
}


@dataclass(frozen=True)
class CudaName:
    name: str
    kind: str
    detail: str
    replacement: object = None  # None: torch.cuda's own object stays


def classify() -> list[CudaName]:
    """Every public name of torch.cuda with what the shim does to it."""
    names = sorted(set(torch.cuda.__all__) | set(_submodules()))
    return [_classify(name) for name in names]


def _classify(name: str) -> CudaName:
    original = getattr(torch.cuda, name)
    label = f"torch.cuda.{name}"
    if name in _submodules():
        if name == "nvtx":
            return CudaName(name, SUBMODULE_MAPPED, _WORKING_SUBMODULES[name], _nvtx_module())
        if name in _WORKING_SUBMODULES:
            return CudaName(name, SUBMODULE_MAPPED, _WORKING_SUBMODULES[name])
        return CudaName(name, SUBMODULE_LEFT, "CUDA-specific submodule")
    if isinstance(original, type) and issubclass(original, BaseException):
        return CudaName(name, LEFT, "exception class (npusim raises torch's generic ones)")
    if name in _EQUIVALENTS:
        target, why = _EQUIVALENTS[name]
        return CudaName(name, EQUIVALENT, f"torch.npusim.{target}: {why}", _served(label, getattr(torch.npusim, target)))
    if name == "get_device_properties":
        return CudaName(name, MAPPED, "torch.npusim.get_device_properties, with gcnArchName",
                        _served(label, _device_properties))
    counterpart = getattr(torch.npusim, name, None)
    if counterpart is not None and not isinstance(counterpart, types.ModuleType):
        if callable(counterpart):
            return CudaName(name, MAPPED, f"torch.npusim.{name}", _served(label, counterpart))
        return CudaName(name, MAPPED, f"torch.npusim.{name} (a value)", counterpart)
    if not callable(original):
        return CudaName(name, LEFT, f"value {original!r} (no npusim counterpart; left unchanged)")
    reason = "no npusim counterpart"
    if isinstance(original, type):
        return CudaName(name, RAISES, reason, unsupported_class(label, _reason(name)))
    return CudaName(name, RAISES, reason, unsupported_function(label, _reason(name)))


def _reason(name: str) -> str:
    if name.endswith("Tensor") or name.endswith("Storage"):
        return "legacy CUDA tensor types; use torch.tensor(..., device='cuda') or .cuda()"
    return "torch.npusim has no counterpart"


def _submodules() -> list[str]:
    return [name for name, value in vars(torch.cuda).items() if not name.startswith("_")
            and isinstance(value, types.ModuleType) and value.__name__ == f"torch.cuda.{name}"]


def _served(label: str, target):
    """`target` with CUDA devices in its arguments mapped; classes get a stand-in."""
    if isinstance(target, type):
        return stand_in(target, label)

    @functools.wraps(target)
    def served(*args, **kwargs):
        return target(*map_args(args), **map_kwargs(kwargs))

    return served


class _CudaShapedProperties:
    """npusim's device properties, plus gcnArchName: with torch.version.cuda None, torch's own code
    (Inductor's cache key) reads the device's architecture name there, as on ROCm."""

    def __init__(self, properties) -> None:
        self._properties = properties
        self.gcnArchName = properties.name

    def __getattr__(self, name):
        return getattr(self._properties, name)

    def __repr__(self) -> str:
        return repr(self._properties)


def _device_properties(device=None):
    return _CudaShapedProperties(torch.npusim.get_device_properties(device))


# --- torch.cuda.nvtx as profiler ranges ----------------------------------------------------------

def _nvtx_module() -> types.ModuleType:
    module = types.ModuleType("torch.cuda.nvtx", "torch.cuda.nvtx served by torch.profiler record_function "
                                                 "ranges (torch_npu_sim.transfer_cuda)")
    stack: list = []

    def range_push(msg):
        scope = torch.autograd.profiler.record_function(msg)
        scope.__enter__()
        stack.append(scope)
        return len(stack) - 1

    def range_pop():
        if not stack:
            return -1
        stack.pop().__exit__(None, None, None)
        return len(stack)

    open_ranges: dict[int, object] = {}  # range_start's ranges may end in any order

    def range_start(msg) -> int:
        scope = torch.autograd.profiler.record_function(msg)
        scope.__enter__()
        open_ranges[id(scope)] = scope
        return id(scope)

    def range_end(range_id) -> None:
        open_ranges.pop(range_id).__exit__(None, None, None)

    def mark(msg) -> None:
        with torch.autograd.profiler.record_function(msg):
            pass

    @contextlib.contextmanager
    def range(msg, *args, **kwargs):  # noqa: A001 - nvtx's name
        with torch.autograd.profiler.record_function(msg.format(*args, **kwargs)):
            yield

    for function in (range_push, range_pop, range_start, range_end, mark, range):
        setattr(module, function.__name__, function)
    return module

