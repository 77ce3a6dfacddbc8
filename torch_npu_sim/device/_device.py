"""Devices: count, selection, properties, synchronisation."""
from __future__ import annotations

import threading
from typing import Any, Union

import torch

from .. import _C

_device_t = Union[torch.device, str, int, None]

_initialized = False
_init_lock = threading.Lock()


def is_available() -> bool:
    """True when at least one simulated device is configured (NPUSIM_DEVICE_COUNT) and the
    NPUSIM_* configuration is valid."""
    return _C._device_count() > 0


def _unavailable_reason() -> str | None:
    """Why npusim cannot be used (naming the variable and its value), or None."""
    error = _C._config_error()
    if error:
        return error
    if _C._device_count() == 0:
        return "NPUSIM_DEVICE_COUNT=0 configures no devices"
    return None


def is_initialized() -> bool:
    return _initialized


def _is_in_bad_fork() -> bool:
    return False  # the simulated runtime holds no state a forked child can't use


def _lazy_init() -> None:
    global _initialized
    if _initialized:
        return
    with _init_lock:
        if _initialized:
            return
        reason = _unavailable_reason()
        if reason:
            raise RuntimeError(f"npusim is unavailable: {reason} (PyTorch itself works as usual; fix or unset "
                               "the variable to use npusim devices)")
        _initialized = True


def init() -> None:
    _lazy_init()


def device_count() -> int:
    return _C._device_count()


def _device_index(device: _device_t = None, optional: bool = True) -> int:
    """Index of an npusim device given as int, 'npusim:N', torch.device or None (current)."""
    if device is None:
        return current_device()
    if isinstance(device, str):
        device = torch.device(device)
    if isinstance(device, torch.device):
        if device.type != "npusim":
            raise ValueError(f"Expected an npusim device, but got: {device}")
        return current_device() if device.index is None else device.index
    if isinstance(device, int) and not isinstance(device, bool):
        return device
    raise TypeError(f"Expected an npusim device (int, str or torch.device), but got {type(device).__name__}")


def current_device() -> int:
    return _C._current_device()


def set_device(device: _device_t) -> None:
    index = _device_index(device)
    if index >= 0:
        _lazy_init()
        _C._set_device(index)


class device:
    """Context manager that selects an npusim device, like ``torch.cuda.device``."""

    def __init__(self, device: Any):
        self.idx = -1 if device is None else _device_index(device)
        self.prev_idx = -1

    def __enter__(self):
        if self.idx >= 0:
            _lazy_init()
        self.prev_idx = _C._exchange_device(self.idx)

    def __exit__(self, *exc):
        if self.idx >= 0:
            _C._set_device(self.prev_idx)
        return False


class device_of(device):
    """Selects the device of a tensor (no-op for CPU tensors)."""

    def __init__(self, obj: torch.Tensor):
        super().__init__(obj.get_device() if obj.device.type == "npusim" else None)


class _DeviceProperties:
    def __init__(self, props: dict):
        self.__dict__.update(props)

    def __repr__(self) -> str:
        return (
            f"_NpuSimDeviceProperties(name='{self.name}', major={self.major}, minor={self.minor}, "
            f"total_memory={self.total_memory // (1024 * 1024)}MB, "
            f"multi_processor_count={self.multi_processor_count})"
        )


def get_device_properties(device: _device_t = None) -> _DeviceProperties:
    _lazy_init()
    from ..simulation import chips, get_chip  # the simulated chip's cores and figures

    return _DeviceProperties(chips.overlay_properties(_C._get_device_properties(_device_index(device)), get_chip()))


def get_device_name(device: _device_t = None) -> str:
    return get_device_properties(device).name


def get_device_capability(device: _device_t = None) -> tuple[int, int]:
    props = get_device_properties(device)
    return props.major, props.minor


def synchronize(device: _device_t = None) -> None:
    """Waits for all work on all streams of the device."""
    _lazy_init()
    torch.accelerator.synchronize(_device_index(device))


def mem_get_info(device: _device_t = None) -> tuple[int, int]:
    """(free, total) bytes of the device's simulated capacity."""
    _lazy_init()
    return tuple(_C._mem_get_info(_device_index(device)))


def launch_count(device: _device_t = None) -> int:
    """Work items (kernels, copies, fills) launched on the device's streams so far."""
    _lazy_init()
    return _C._launch_count(_device_index(device))


def get_amp_supported_dtype() -> list[torch.dtype]:
    return [torch.float16, torch.bfloat16]


def is_bf16_supported(including_emulation: bool = True) -> bool:
    return True
