"""Streams and events: subclasses of the generic torch.Stream / torch.Event."""
from __future__ import annotations

from typing import Optional

import torch

from .. import _C
from ._device import _device_index, _device_t, _lazy_init


class Stream(torch.Stream):
    """An npusim stream. ``priority``: 0 (normal) or negative (high), as in CUDA."""

    def __new__(cls, device: _device_t = None, priority: int = 0, **kwargs):
        _lazy_init()
        if "stream_id" in kwargs:  # wraps an existing stream
            return super().__new__(cls, **kwargs)
        return super().__new__(cls, device=torch.device("npusim", _device_index(device)), priority=priority)

    @property
    def priority(self) -> int:
        return _C._stream_priority(self.stream_id, self.device_index)

    def __repr__(self) -> str:
        return f"<torch.npusim.Stream device=npusim:{self.device_index} stream_id={self.stream_id}>"


class _EventMeta(type):
    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, torch.Event) and obj.device.type == "npusim"


class Event(metaclass=_EventMeta):
    """An npusim event; ``enable_timing=True`` allows ``elapsed_time``.

    Instances are plain ``torch.Event`` objects on npusim (``torch.Event.elapsed_time``
    accepts only that exact type), and ``isinstance(e, torch.npusim.Event)`` holds for them.
    """

    def __new__(cls, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False):
        if interprocess:
            raise ValueError("npusim events cannot be shared between processes (interprocess=True)")
        _lazy_init()
        return torch.Event(
            device=torch.device("npusim", _C._current_device()), enable_timing=enable_timing, blocking=blocking
        )


def _wrap(stream_tuple) -> Stream:
    stream_id, device_index, device_type = stream_tuple
    return Stream(stream_id=stream_id, device_index=device_index, device_type=device_type)


def current_stream(device: _device_t = None) -> Stream:
    _lazy_init()
    return _wrap(_C._current_stream(_device_index(device)))


def default_stream(device: _device_t = None) -> Stream:
    _lazy_init()
    return _wrap(_C._default_stream(_device_index(device)))


def set_stream(stream: torch.Stream) -> None:
    """Makes ``stream`` current on its device and selects that device."""
    if stream is None:
        return
    if stream.device.type != "npusim":
        raise ValueError(f"Expected an npusim stream, but got a stream on {stream.device}")
    _lazy_init()
    _C._set_device(stream.device_index)
    _C._set_stream(stream.stream_id, stream.device_index)


class StreamContext:
    """``with torch.npusim.stream(s):`` runs the block with ``s`` current (None: no-op)."""

    def __init__(self, stream: Optional[torch.Stream]):
        self.stream = stream
        self._saved: list = []

    def __enter__(self):
        if self.stream is None:
            return self.stream
        prev_device = _C._current_device()
        self._saved = [prev_device, current_stream(prev_device), current_stream(self.stream.device_index)]
        set_stream(self.stream)
        return self.stream

    def __exit__(self, *exc):
        if self.stream is None:
            return False
        prev_device, prev_stream, prev_dst_stream = self._saved
        _C._set_stream(prev_dst_stream.stream_id, prev_dst_stream.device_index)
        _C._set_stream(prev_stream.stream_id, prev_stream.device_index)
        _C._set_device(prev_device)
        return False


def stream(stream: Optional[torch.Stream]) -> StreamContext:
    return StreamContext(stream)
