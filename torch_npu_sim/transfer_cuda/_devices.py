"""What the shim changes in a call: CUDA devices become npusim devices, NCCL becomes npusim.

Only values that name CUDA are changed: the strings ``"cuda"`` and ``"cuda:<index>"``, CUDA
``torch.device`` objects, the device type ``"cuda"`` and the backend ``"nccl"``. The index is
kept (``cuda:1`` is ``npusim:1``), and nothing else in a call (dtypes, values, other devices)
is touched. These functions use plain string operations, which ``torch.compile`` traces
without a graph break.
"""
from __future__ import annotations

import torch

CUDA = "cuda"
NPUSIM = "npusim"
# torch.device as torch defines it; the shim may later put a mapping proxy in its place
REAL_DEVICE = torch.device

# parameter names under which torch functions take a device, a device type or several devices
DEVICE_PARAMETERS = frozenset({"device", "device_type", "device_id", "device_ids", "output_device",
                               "pin_memory_device", "devices", "map_location"})


class UnsupportedCudaFeature(RuntimeError):
    """A CUDA feature the npusim shim does not map; the message names the feature."""


def cuda_index(text: str):
    """For "cuda" -> (True, None), "cuda:3" -> (True, 3); anything else -> (False, None)."""
    if text == CUDA:
        return True, None
    head, sep, tail = text.partition(":")
    if head == CUDA and sep and tail.isdigit() and tail.isascii():
        return True, int(tail)
    return False, None


def map_device(value):
    """`value` with a CUDA device replaced by the npusim device of the same index."""
    if isinstance(value, str):
        is_cuda, index = cuda_index(value)
        if is_cuda:
            return NPUSIM if index is None else f"{NPUSIM}:{index}"
        return value
    if type(value) is REAL_DEVICE and value.type == CUDA:
        return REAL_DEVICE(NPUSIM, value.index)
    if isinstance(value, (list, tuple)) and any(_names_cuda(item) for item in value):
        return type(value)(map_device(item) for item in value)
    return value


def _names_cuda(value) -> bool:
    if isinstance(value, str):
        return cuda_index(value)[0]
    return type(value) is REAL_DEVICE and value.type == CUDA


def map_device_type(value):
    """A device type argument ("cuda" -> "npusim"); a device string or object is mapped too."""
    return NPUSIM if value == CUDA else map_device(value)


def map_args(args: tuple) -> tuple:
    """Positional arguments with each CUDA device (string or object) mapped."""
    for position, value in enumerate(args):
        if _names_cuda(value) or isinstance(value, (list, tuple)) and value and any(map(_names_cuda, value)):
            return args[:position] + tuple(map_device(item) for item in args[position:])
    return args


def map_kwargs(kwargs: dict) -> dict:
    """Keyword arguments with the devices under DEVICE_PARAMETERS mapped."""
    for name in DEVICE_PARAMETERS.intersection(kwargs):
        kwargs[name] = map_parameter(name, kwargs[name])
    return kwargs


def map_backend(backend):
    """A c10d backend spec with NCCL replaced by npusim: "nccl" -> "npusim",
    "cpu:gloo,cuda:nccl" -> "cpu:gloo,npusim:npusim"; others unchanged."""
    if not isinstance(backend, str):
        return backend
    if backend.lower() == "nccl":
        return NPUSIM
    if ":" not in backend:
        return backend
    parts = []
    for part in backend.split(","):
        device, sep, name = part.partition(":")
        device = NPUSIM if device.strip() == CUDA else device
        name = NPUSIM if name.strip().lower() == "nccl" else name
        parts.append(f"{device}{sep}{name}")
    return ",".join(parts)


def map_location(value):
    """torch.load's map_location: CUDA locations (given, or recorded in the checkpoint when
    map_location is None or a dict) restore on npusim; CPU and other locations are kept."""
    if value is None:
        return _restore_cuda_on_npusim
    if isinstance(value, dict):
        table = {key: map_device(target) for key, target in value.items()}
        return lambda storage, location: _restore(storage, table.get(location, location))
    if callable(value):
        def restore(storage, location):
            result = value(storage, location)
            return _restore(storage, location) if result is None else result
        return restore
    return map_device(value)


def _restore_cuda_on_npusim(storage, location):
    return _restore(storage, location)


def _restore(storage, location):
    from torch.serialization import default_restore_location
    return default_restore_location(storage, map_device(location) if isinstance(location, str) else location)


# how each mapped parameter is mapped (others: map_device)
PARAMETER_MAPPERS = {"device_type": map_device_type, "backend": map_backend, "map_location": map_location}


def map_parameter(name: str, value):
    return PARAMETER_MAPPERS.get(name, map_device)(value)
