"""Replacements for torch's device-taking callables (found by _discovery) and torch.device."""
from __future__ import annotations

import functools
import inspect

import torch

from . import _discovery
from ._devices import CUDA, NPUSIM, REAL_DEVICE, map_args, map_device, map_kwargs, map_parameter
from ._proxies import stand_in

WRAPPED_BUILTIN = "device arguments mapped (C callable)"
WRAPPED_PYTHON = "device arguments mapped (Python callable)"
STAND_IN = "stand-in class: built with mapped arguments"
CUDA_METHOD = "X.cuda(device) -> X.npusim(device)"


def plan() -> list[tuple[object, str, object, str, str]]:
    """(owner, name, replacement, kind, owner's public name) for every device-taking callable of torch."""
    found = []
    seen: dict[int, object] = {}  # one replacement per original object, wherever torch exports it
    aten = [c for op in _discovery.aten_device_ops() if op not in _discovery.NO_PYTHON_DEVICE_ARGUMENT
            for c in _discovery.exposures(op)]
    for entry in aten + _discovery.documented_builtins() + _discovery.python_level():
        if _discovery.names_a_device_type(entry.name):
            if entry.name == CUDA:
                found.append((entry.owner, entry.name, _cuda_method(entry.label), CUDA_METHOD, entry.where))
            continue  # Tensor.xpu(0) etc. take their own device type's index
        original = entry.value
        key = id(original)
        if key not in seen:
            seen[key] = _replacement(entry, original)
        replacement, kind = seen[key]
        name = "__init__" if isinstance(getattr(entry.owner, entry.name), type) and not entry.builtin else entry.name
        owner = getattr(entry.owner, entry.name) if name == "__init__" else entry.owner
        if any(owner is o and name == n for o, n, *_ in found):
            continue
        found.append((owner, name, replacement, kind, entry.label if name == "__init__" else entry.where))
    found.append((torch, "device", stand_in(REAL_DEVICE, "torch.device", _map_device_call), STAND_IN, "torch"))
    return found


def _replacement(entry, original):
    if entry.builtin:
        if isinstance(original, type):
            return stand_in(original, entry.label), STAND_IN
        return _builtin_wrapper(original), WRAPPED_BUILTIN
    if isinstance(original, type):
        return _python_wrapper(original.__init__, entry.parameters), WRAPPED_PYTHON
    function = original.__func__ if isinstance(original, (staticmethod, classmethod)) else original
    wrapped = _python_wrapper(function, entry.parameters)
    if isinstance(original, staticmethod):
        wrapped = staticmethod(wrapped)
    elif isinstance(original, classmethod):
        wrapped = classmethod(wrapped)
    return wrapped, WRAPPED_PYTHON


def _builtin_wrapper(function):
    @functools.wraps(function)
    def mapped(*args, **kwargs):
        return function(*map_args(args), **map_kwargs(kwargs))

    return mapped


def _python_wrapper(function, parameters):
    positional = tuple((position, name) for position, name in parameters if position is not None)
    keywords = tuple(name for _, name in parameters)

    @functools.wraps(function)
    def mapped(*args, **kwargs):
        if positional and len(args) > positional[0][0]:
            args = list(args)
            for position, name in positional:
                if position < len(args):
                    args[position] = map_parameter(name, args[position])
        for name in keywords:
            if name in kwargs:
                kwargs[name] = map_parameter(name, kwargs[name])
        return function(*args, **kwargs)

    mapped.__signature__ = inspect.signature(function)
    return mapped


def _cuda_method(label: str):
    """Tensor/Module/Storage .cuda(device=None, ...): the same object's .npusim with the device mapped."""
    def cuda(self, device=None, *args, **kwargs):
        return self.npusim(map_device(device), *args, **kwargs)

    cuda.__doc__ = f"{label} served by .{NPUSIM}() (torch_npu_sim.transfer_cuda)"
    return cuda


def _map_device_call(args, kwargs):
    # torch.device("cuda", 1), torch.device(type="cuda"), torch.device("cuda:1")
    if args and args[0] == CUDA:
        args = (NPUSIM,) + tuple(args[1:])
    if kwargs.get("type") == CUDA:
        kwargs["type"] = NPUSIM
    return map_args(args), kwargs
