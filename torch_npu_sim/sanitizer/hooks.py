"""What the race detector learns from stream and event calls.

npusim streams are a Python subclass of ``torch.Stream`` and events are made by
``torch.npusim.Event``, so while the sanitizer is on, their ordering calls are wrapped
here: ``record_event``, ``wait_event``, ``wait_stream``, ``synchronize`` on streams;
``record``, ``wait``, ``synchronize`` on events made while it is on; and the device
synchronizes (``torch.npusim.synchronize``, ``torch.accelerator.synchronize``);
``torch.accelerator.current_stream()`` hands out the watched npusim stream class. Events
made as plain ``torch.Event`` objects (not through ``torch.npusim.Event`` or
``record_event``) carry no clock: waiting on them orders nothing here.
"""
from __future__ import annotations

import torch

from ..device import streams as _streams

_saved: dict = {}


def _key(stream) -> tuple:
    return (stream.device_index, stream.stream_id)


def install(detector) -> None:
    Stream = _streams.Stream
    originals = {
        "record_event": Stream.record_event, "wait_event": Stream.wait_event,
        "wait_stream": Stream.wait_stream, "synchronize": Stream.synchronize,
    }
    ordering = detector.ordering

    class TracedEvent(torch.Event):
        """A torch.Event that carries the clock of the stream it was recorded on."""

        def record(self, stream=None):
            stream = stream if stream is not None else torch.npusim.current_stream(self.device.index)
            super().record(stream)
            self.npusim_clock = ordering.snapshot(_key(stream))

        def wait(self, stream=None):
            stream = stream if stream is not None else torch.npusim.current_stream(self.device.index)
            super().wait(stream)
            ordering.wait(_key(stream), getattr(self, "npusim_clock", {}))

        def synchronize(self):
            super().synchronize()
            ordering.host_waited(getattr(self, "npusim_clock", {}))

    def make_event(enable_timing=False, blocking=False, interprocess=False):
        if interprocess:
            raise ValueError("npusim events cannot be shared between processes (interprocess=True)")
        return TracedEvent(device=torch.device("npusim", torch.npusim.current_device()),
                           enable_timing=enable_timing, blocking=blocking)

    def record_event(self, event=None):
        event = event if event is not None else make_event()
        if isinstance(event, TracedEvent):
            event.record(self)
        else:  # an event made before the sanitizer was on: the native call, no clock
            originals["record_event"](self, event)
        return event

    def wait_event(self, event):
        if isinstance(event, TracedEvent):
            event.wait(self)
        else:
            originals["wait_event"](self, event)

    def wait_stream(self, other):
        originals["wait_stream"](self, other)
        ordering.wait(_key(self), ordering.snapshot(_key(other)))

    def stream_synchronize(self):
        originals["synchronize"](self)
        ordering.host_waited(ordering.snapshot(_key(self)))

    def accelerator_current_stream(device=None):
        stream = _saved["accelerator_current_stream"](device)
        if stream.device.type != "npusim" or isinstance(stream, Stream):
            return stream
        # the npusim subclass, whose ordering calls are watched
        return Stream(stream_id=stream.stream_id, device_index=stream.device_index, device_type=stream.device_type)

    def device_synchronize(device=None):
        _saved["accelerator_synchronize"](device)
        ordering.host_waited_for_all()

    _saved["stream_methods"] = {name: Stream.__dict__.get(name) for name in originals}
    _saved["event"] = torch.npusim.Event
    _saved["accelerator_synchronize"] = torch.accelerator.synchronize
    _saved["npusim_synchronize"] = torch.npusim.synchronize
    _saved["accelerator_current_stream"] = torch.accelerator.current_stream
    Stream.record_event, Stream.wait_event = record_event, wait_event
    Stream.wait_stream, Stream.synchronize = wait_stream, stream_synchronize
    torch.npusim.Event = make_event
    torch.accelerator.synchronize = device_synchronize
    torch.npusim.synchronize = device_synchronize
    torch.accelerator.current_stream = accelerator_current_stream


def uninstall() -> None:
    if not _saved:
        return
    for name, own in _saved["stream_methods"].items():
        if own is None:
            delattr(_streams.Stream, name)  # torch.Stream's method shows through again
        else:
            setattr(_streams.Stream, name, own)
    torch.npusim.Event = _saved["event"]
    torch.accelerator.synchronize = _saved["accelerator_synchronize"]
    torch.npusim.synchronize = _saved["npusim_synchronize"]
    torch.accelerator.current_stream = _saved["accelerator_current_stream"]
    _saved.clear()
