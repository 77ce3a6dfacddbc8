"""Helpers called by Inductor-generated wrapper code for npusim graphs."""
from __future__ import annotations

import torch

from .. import _C
from .. import device as _npusim

# kernel(*args) inside a device-access scope: compiled kernels read npusim memory directly
npusim_kernel_call = _C._call_with_device_access

_devices = [torch.device("npusim", index) for index in range(_npusim.device_count())]


def empty_strided_npusim(size, stride, dtype: torch.dtype, index: int) -> torch.Tensor:
    """A buffer for compiled code, from the npusim caching allocator of device ``index``."""
    return torch.empty_strided(size, stride, dtype=dtype, device=_devices[index])
