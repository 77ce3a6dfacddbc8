"""Happens-before between npusim streams, as vector clocks.

Every kernel on a stream takes the next sequence number. A stream's clock says, for
each stream, the last kernel of it that this stream is ordered after: its own kernels,
plus whatever events it waited for and whatever the host had synchronised with when it
launched. An access by stream S is ordered after an earlier access (T, n) exactly when
S's clock for T is at least n.
"""
from __future__ import annotations

StreamKey = tuple  # (device index, stream id)
Clock = dict


def _merge(into: Clock, other: Clock) -> None:
    for stream, seq in other.items():
        if into.get(stream, 0) < seq:
            into[stream] = seq


class StreamOrdering:
    def __init__(self) -> None:
        self._clocks: dict[StreamKey, Clock] = {}
        self._host: Clock = {}  # what the host has waited for; new streams start there
        self._seq = 0

    def _clock(self, stream: StreamKey) -> Clock:
        clock = self._clocks.get(stream)
        if clock is None:
            clock = self._clocks[stream] = dict(self._host)
        return clock

    def launch(self, stream: StreamKey) -> int:
        """A kernel on ``stream``: its sequence number."""
        self._seq += 1
        self._clock(stream)[stream] = self._seq
        return self._seq

    def is_ordered_after(self, stream: StreamKey, earlier_stream: StreamKey, earlier_seq: int) -> bool:
        return earlier_stream == stream or self._clock(stream).get(earlier_stream, 0) >= earlier_seq

    def snapshot(self, stream: StreamKey) -> Clock:
        """An event recorded on ``stream`` now."""
        return dict(self._clock(stream))

    def wait(self, stream: StreamKey, event_clock: Clock) -> None:
        """``stream`` waits for an event: its later kernels come after the event's."""
        _merge(self._clock(stream), event_clock)

    def host_waited(self, clock: Clock) -> None:
        """The host waited for ``clock`` (stream or event synchronize): whatever the host
        launches afterwards, on any stream, comes after it."""
        _merge(self._host, clock)
        for other in self._clocks.values():
            _merge(other, clock)

    def host_waited_for_all(self) -> None:
        """Device synchronize."""
        everything: Clock = {}
        for clock in self._clocks.values():
            _merge(everything, clock)
        self.host_waited(everything)
