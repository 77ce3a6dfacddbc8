"""Dynamo's runtime interface for npusim (streams, events, devices, properties)."""
from __future__ import annotations

import torch
from torch._dynamo.device_interface import DeviceInterface, register_interface_for_device

from .. import _C
from .. import device as npusim


class NpuSimInterface(DeviceInterface):
    device = npusim.device
    Event = npusim.Event
    Stream = npusim.Stream

    class Worker:
        # Compile workers read properties recorded here; the simulated runtime needs no
        # special care across fork, so they are simply queried.
        @staticmethod
        def set_device(device: int) -> None:
            npusim.set_device(device)

        @staticmethod
        def current_device() -> int:
            return npusim.current_device()

        @staticmethod
        def get_device_properties(device: torch.types.Device = None):
            return npusim.get_device_properties(device)

    current_device = staticmethod(npusim.current_device)
    set_device = staticmethod(npusim.set_device)
    device_count = staticmethod(npusim.device_count)
    is_available = staticmethod(npusim.is_available)
    stream = staticmethod(npusim.stream)
    current_stream = staticmethod(npusim.current_stream)
    set_stream = staticmethod(npusim.set_stream)
    synchronize = staticmethod(npusim.synchronize)
    memory_allocated = staticmethod(npusim.memory_allocated)

    @staticmethod
    def exchange_device(device: int) -> int:
        return _C._exchange_device(device)

    @staticmethod
    def maybe_exchange_device(device: int) -> int:
        return _C._exchange_device(device)

    @staticmethod
    def _set_stream_by_id(stream_id: int, device_index: int, device_type: int) -> None:
        _C._set_stream(stream_id, device_index)

    @staticmethod
    def get_raw_stream(device_idx: int) -> int:
        # Kernels run synchronously on the calling thread; the stream id identifies the
        # ordering queue for code that records or waits on it.
        return npusim.current_stream(device_idx).stream_id

    @staticmethod
    def get_compute_capability(device: torch.types.Device = None) -> str:
        major, minor = npusim.get_device_capability(device)
        return f"{major}.{minor}"

    @staticmethod
    def is_bf16_supported(including_emulation: bool = False) -> bool:
        return True

    @staticmethod
    def is_triton_capable(device: torch.types.Device = None) -> bool:
        return False


def register() -> None:
    register_interface_for_device("npusim", NpuSimInterface)
    for index in range(npusim.device_count()):
        register_interface_for_device(f"npusim:{index}", NpuSimInterface)
