"""Helpers called by Inductor-generated wrapper code for npusim graphs."""
from __future__ import annotations

import torch

from .. import _C
from .. import device as _npusim
from ..simulation import compiled as _simulation_compiled

# kernel(*args) inside a device-access scope: compiled kernels read npusim memory directly;
# costed: each call is charged to the stream's simulated clock while the cost model is on
npusim_kernel_call = _simulation_compiled.costed(_C._call_with_device_access)

_devices = [torch.device("npusim", index) for index in range(_npusim.device_count())]


def empty_strided_npusim(size, stride, dtype: torch.dtype, index: int) -> torch.Tensor:
    """A buffer for compiled code, from the npusim caching allocator of device ``index``."""
    return torch.empty_strided(size, stride, dtype=dtype, device=_devices[index])
