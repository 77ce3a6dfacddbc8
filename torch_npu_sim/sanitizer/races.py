"""The stream-race detector: every ATen op on npusim tensors is a kernel on the current
stream that reads some storages and writes others (from the op's schema); an access that
is not ordered after an earlier conflicting access from another stream (write/any or
any/write) is a race. Ordering comes from :mod:`.ordering`, fed by the stream and event
calls that :mod:`.hooks` observes.
"""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from .ordering import Clock, StreamKey, StreamOrdering

_aten = torch.ops.aten
# a blocking copy to the host waits for the stream, as cudaMemcpy does
_HOST_WAITS = {_aten._local_scalar_dense.default}
_COPIES_OUT = {_aten._to_copy.default, _aten.copy_.default}
# not kernels: bookkeeping on the storage
_NOT_KERNELS = {_aten.record_stream.default}


@dataclass
class Access:
    write: bool
    stream: StreamKey
    seq: int
    op: str
    arguments: list[str]
    stack: traceback.StackSummary

    def describe(self) -> str:
        what = "writing" if self.write else "reading"
        args = f" (argument {', '.join(self.arguments)})" if self.arguments else " (output)"
        return (f"{what}{args} in {self.op} on stream {_stream_name(self.stream)}, at:\n"
                + "".join(self.stack.format()))


@dataclass
class _StorageState:
    description: str
    write: Access | None = None
    reads: list[Access] = field(default_factory=list)  # since the last write


def _stream_name(stream: StreamKey) -> str:
    device, stream_id = stream
    return f"npusim:{device} stream_id={stream_id}"


class StreamRace(Exception):
    """Two accesses to one npusim storage from different streams, unordered."""

    def __init__(self, tensor: str, current: Access, previous: Access):
        self.tensor, self.current, self.previous = tensor, current, previous
        super().__init__(str(self))

    def __str__(self) -> str:
        return (f"npusim stream sanitizer: possible data race on {self.tensor}\n"
                f"Access by stream {_stream_name(self.current.stream)}: {self.current.describe()}"
                f"Previous access by stream {_stream_name(self.previous.stream)}, with no event or wait "
                f"ordering the two: {self.previous.describe()}")


class StreamSanitizerError(RuntimeError):
    """Raised after an op that raced with an earlier one; ``errors`` lists each race."""

    def __init__(self, errors: list[StreamRace]):
        self.errors = errors
        super().__init__(f"detected {len(errors)} stream race(s)\n" + "\n".join(str(e) for e in errors))


_OWN_DIR = os.path.dirname(os.path.abspath(__file__))
# the frames dispatch modes run under, which say nothing about the caller
_PLUMBING = (_OWN_DIR, os.path.join("torch", "_compile.py"), os.path.join("_dynamo", "eval_frame.py"))


def _stack() -> traceback.StackSummary:
    frames = [(f, line) for f, line in traceback.walk_stack(None)
              if not any(p in f.f_code.co_filename for p in _PLUMBING)]
    stack = traceback.StackSummary.extract(iter(frames), lookup_lines=False)
    stack.reverse()
    return stack


def _describe(t: torch.Tensor) -> str:
    storage = t.untyped_storage()
    return (f"tensor of shape {tuple(t.shape)}, {t.dtype}, on {t.device} "
            f"(storage 0x{storage.data_ptr():x}, {storage.nbytes()} bytes)")


class RaceDetector(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ordering = StreamOrdering()
        self._storages: dict[int, _StorageState] = {}

    # ---- stream and event calls (from .hooks)
    def event_recorded(self, stream: StreamKey) -> Clock:
        return self.ordering.snapshot(stream)

    def stream_waited(self, stream: StreamKey, clock: Clock) -> None:
        self.ordering.wait(stream, clock)

    # ---- kernels
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _NOT_KERNELS:
            return func(*args, **kwargs)
        reads: dict[int, tuple[torch.Tensor, list[str]]] = {}
        writes: dict[int, tuple[torch.Tensor, list[str]]] = {}
        schema = func._schema
        for index, argument in enumerate(schema.arguments):
            if argument.kwarg_only:
                value = kwargs.get(argument.name)
            else:
                value = args[index] if index < len(args) else kwargs.get(argument.name)
            alias = argument.alias_info
            if alias is not None and not alias.is_write:
                continue  # a view: metadata only
            into = writes if alias is not None and alias.is_write else reads
            for t in pytree.tree_leaves(value):
                ptr = _storage_ptr(t)
                if ptr:
                    into.setdefault(ptr, (t, []))[1].append(argument.name)
        out = func(*args, **kwargs)
        fresh: dict[int, torch.Tensor] = {}
        for ret, value in zip(schema.returns, out if isinstance(out, tuple) else (out,)):
            if ret.alias_info is not None:
                continue  # an input returned (already counted) or a view of one
            for t in pytree.tree_leaves(value):
                ptr = _storage_ptr(t)
                if ptr:
                    fresh[ptr] = t
        errors = self._launch(func, reads, writes, fresh)
        if func in _HOST_WAITS or (func in _COPIES_OUT and self._copies_to_host_blocking(func, args, kwargs, out)):
            self.ordering.host_waited(self.ordering.snapshot(_current(args)))
        if errors:
            raise StreamSanitizerError(errors)
        return out

    @staticmethod
    def _copies_to_host_blocking(func, args, kwargs, out) -> bool:
        if kwargs.get("non_blocking") or (func is _aten.copy_.default and len(args) > 2 and args[2]):
            return False
        result = args[0] if func is _aten.copy_.default else out
        return isinstance(result, torch.Tensor) and result.device.type == "cpu"

    def _launch(self, func, reads, writes, fresh) -> list[StreamRace]:
        if not reads and not writes and not fresh:
            return []
        stream = _current((*(t for t, _ in reads.values()), *(t for t, _ in writes.values()), *fresh.values()))
        seq = self.ordering.launch(stream)
        stack = _stack()
        op = str(func._schema.name) + ("." + func._overloadname if func._overloadname != "default" else "")
        errors: list[StreamRace] = []
        for ptr, t in fresh.items():  # a new allocation: earlier history was another tensor's
            self._storages[ptr] = _StorageState(_describe(t))
        for ptr, (t, names) in reads.items():
            if ptr in writes:
                continue
            state = self._state(ptr, t)
            access = Access(False, stream, seq, op, names, stack)
            if state.write is not None and not self.ordering.is_ordered_after(stream, state.write.stream, state.write.seq):
                errors.append(StreamRace(state.description, access, state.write))
            state.reads.append(access)
        for ptr, entry in {**{p: (t, []) for p, t in fresh.items()}, **writes}.items():
            t, names = entry
            state = self._state(ptr, t)
            access = Access(True, stream, seq, op, names, stack)
            for earlier in state.reads or ([state.write] if state.write else []):
                if not self.ordering.is_ordered_after(stream, earlier.stream, earlier.seq):
                    errors.append(StreamRace(state.description, access, earlier))
            state.write, state.reads = access, []
        return errors

    def _state(self, ptr: int, t: torch.Tensor) -> _StorageState:
        state = self._storages.get(ptr)
        if state is None:
            state = self._storages[ptr] = _StorageState(_describe(t))
        return state


def _storage_ptr(t) -> int:
    """The npusim storage's address; 0 for anything else and for freed storages (FSDP2
    frees unsharded parameters by resizing their storage to 0 bytes)."""
    if not isinstance(t, torch.Tensor) or t.device.type != "npusim":
        return 0
    try:
        return t.untyped_storage().data_ptr()
    except RuntimeError:  # a storage with no data behind it
        return 0


def _current(tensors) -> StreamKey:
    """The current stream of the device the kernel runs on."""
    device = 0
    for t in pytree.tree_leaves(tensors):
        if isinstance(t, torch.Tensor) and t.device.type == "npusim":
            device = t.device.index
            break
    s = torch.npusim.current_stream(device)
    return (s.device_index, s.stream_id)
