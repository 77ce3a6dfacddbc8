"""Memory: the caching allocator's statistics (CUDA's key names) and cache control."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

from .. import _C
from ._device import _device_index, _device_t, _lazy_init


def memory_stats(device: _device_t = None) -> OrderedDict[str, Any]:
    """Allocator statistics, e.g. ``allocated_bytes.all.current``, ``num_ooms``."""
    _lazy_init()
    return torch.accelerator.memory_stats(_device_index(device))


def memory_allocated(device: _device_t = None) -> int:
    return memory_stats(device).get("allocated_bytes.all.current", 0)


def max_memory_allocated(device: _device_t = None) -> int:
    return memory_stats(device).get("allocated_bytes.all.peak", 0)


def memory_reserved(device: _device_t = None) -> int:
    return memory_stats(device).get("reserved_bytes.all.current", 0)


def max_memory_reserved(device: _device_t = None) -> int:
    return memory_stats(device).get("reserved_bytes.all.peak", 0)


def reset_peak_memory_stats(device: _device_t = None) -> None:
    _lazy_init()
    torch.accelerator.reset_peak_memory_stats(_device_index(device))


def reset_accumulated_memory_stats(device: _device_t = None) -> None:
    _lazy_init()
    torch.accelerator.reset_accumulated_memory_stats(_device_index(device))


def empty_cache() -> None:
    """Returns all cached, unused blocks to the simulated device."""
    _C._empty_cache()


def sharing_stats() -> dict:
    """What the caching allocator shares with the other processes of a group: whether new
    large segments are made shareable (on once this process joins an npusim group whose
    ranks read each other's memory in place), how many reserved segments peers may map
    (each holds a file descriptor), how many handles collectives took, and how many peer
    mappings this process holds open now."""
    from .. import _C

    return dict(_C._sharing_stats())
