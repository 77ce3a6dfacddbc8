"""Activity records of the simulated clock and a Chrome trace of them (chrome://tracing, Perfetto).

The runtime has one activity observer: while ``record_activities`` runs it replaces any other
(a profiler's, say), and removes it at the end.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json

import torch

_KINDS = ("kernel", "memcpy", "memset", "collective")


@dataclasses.dataclass(frozen=True)
class Activity:
    name: str
    kind: str
    device: int
    stream_id: int  # the runtime's stable id of the stream
    sim_start_ns: int
    sim_end_ns: int
    flops: float
    bytes: float


class Recording:
    def __init__(self):
        self.activities: list[Activity] = []


@contextlib.contextmanager
def record_activities():
    """Collects an Activity per kernel, copy, fill and charged collective launched inside."""
    recording = Recording()
    ops = torch.ops.npusim_sim
    ops.take_activities()  # drop leftovers of an earlier recording
    ops.record_activities(True)
    try:
        yield recording
    finally:
        ops.record_activities(False)
        names, ints, flops, nbytes = ops.take_activities()
        for i, name in enumerate(names):
            kind, device, stream_id, start, end = ints[5 * i:5 * i + 5]
            recording.activities.append(Activity(name, _KINDS[kind], device, stream_id, start, end, flops[i], nbytes[i]))


def chrome_trace(activities: list[Activity], process_name: str = "npusim (simulated time)") -> dict:
    """Chrome trace events: one process per device, one thread per stream, times in simulated us."""
    events = []
    for device in sorted({a.device for a in activities}):
        events.append({"ph": "M", "name": "process_name", "pid": device, "args": {"name": f"{process_name} {device}"}})
    for a in activities:
        events.append({
            "ph": "X", "name": a.name, "cat": a.kind, "pid": a.device, "tid": a.stream_id,
            "ts": a.sim_start_ns / 1e3, "dur": (a.sim_end_ns - a.sim_start_ns) / 1e3,
            "args": {"flops": a.flops, "bytes": a.bytes},
        })
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def write_chrome_trace(path: str, activities: list[Activity]) -> str:
    with open(path, "w") as f:
        json.dump(chrome_trace(activities), f)
    return path
