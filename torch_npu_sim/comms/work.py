"""TorchWork, WorkStatus and ReduceOp: the value types of the communicator API."""
import enum
import threading
import time
from datetime import timedelta

import torch.distributed as dist


class WorkStatus(enum.Enum):
    NOT_STARTED = enum.auto()
    INPROGRESS = enum.auto()
    COMPLETED = enum.auto()
    TIMEDOUT = enum.auto()
    ERROR = enum.auto()


_TERMINAL = (WorkStatus.COMPLETED, WorkStatus.TIMEDOUT, WorkStatus.ERROR)


class RedOpType(enum.Enum):
    SUM = enum.auto()
    PRODUCT = enum.auto()
    MIN = enum.auto()
    MAX = enum.auto()
    BAND = enum.auto()
    BOR = enum.auto()
    BXOR = enum.auto()
    PREMUL_SUM = enum.auto()
    AVG = enum.auto()


class ReduceOp:
    """A reduction: ``ReduceOp.SUM`` ... ``ReduceOp.AVG``, or ``ReduceOp.PREMUL_SUM(factor)``."""

    SUM: "ReduceOp"
    PRODUCT: "ReduceOp"
    MIN: "ReduceOp"
    MAX: "ReduceOp"
    BAND: "ReduceOp"
    BOR: "ReduceOp"
    BXOR: "ReduceOp"
    AVG: "ReduceOp"

    def __init__(self, type: RedOpType, factor=None):
        self._type = type
        self.factor = factor

    @property
    def type(self) -> RedOpType:
        return self._type

    @staticmethod
    def PREMUL_SUM(factor) -> "ReduceOp":  # noqa: N802 (TorchComms' spelling)
        return ReduceOp(RedOpType.PREMUL_SUM, factor)

    def to_c10d(self):
        if self._type is RedOpType.PREMUL_SUM:
            return dist._make_nccl_premul_sum(self.factor)
        return getattr(dist.ReduceOp, self._type.name)

    def __eq__(self, other):
        return isinstance(other, ReduceOp) and (self._type, self.factor) == (other._type, other.factor)

    def __hash__(self):
        return hash((self._type, self.factor if isinstance(self.factor, (int, float)) else id(self.factor)))

    def __repr__(self):
        return f"ReduceOp.{self._type.name}" + (f"({self.factor})" if self._type is RedOpType.PREMUL_SUM else "")


for _t in RedOpType:
    if _t is not RedOpType.PREMUL_SUM:
        setattr(ReduceOp, _t.name, ReduceOp(_t))


def _classify(error: BaseException) -> WorkStatus:
    return WorkStatus.TIMEDOUT if "timed out" in str(error).lower() else WorkStatus.ERROR


class TorchWork:
    """An operation in flight. ``wait()`` blocks the calling thread until it is done (the
    simulated device runs work on the host, so the stream-ordered and the blocking wait
    are the same) and raises its error; ``status()`` never blocks."""

    def __init__(self, comm, works=(), then=None):
        self._comm = comm
        self._works = list(works)
        self._then = then  # runs once after every part succeeded (e.g. copy out a staging buffer)
        self._status = WorkStatus.INPROGRESS if self._works else WorkStatus.COMPLETED
        self._error = None
        self._lock = threading.Lock()
        self._generation = getattr(comm, "_generation", 0)
        if not self._works and then is not None:
            then()

    def status(self) -> WorkStatus:
        with self._lock:
            if self._status in _TERMINAL or not all(w.is_completed() for w in self._works):
                return self._status
        try:  # every part is done: collect the outcome without blocking
            self.wait()
        except Exception:
            pass
        return self._status

    def is_completed(self) -> bool:
        return self.status() is WorkStatus.COMPLETED

    def exception(self):
        """The error this work failed with, or None."""
        return self._error

    def wait(self, timeout: timedelta | float | None = None) -> None:
        """Waits for completion; `timeout` (a timedelta or seconds) bounds this wait only.
        When it passes, the status becomes TIMEDOUT and the communicator is aborted, since
        the operation cannot be left half done on one rank."""
        if isinstance(timeout, timedelta):
            timeout = timeout.total_seconds()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._status in _TERMINAL:
                if self._error is not None:
                    raise self._error
                return
        try:
            for w in self._works:
                if deadline is None:
                    w.wait()
                else:
                    w.wait(timedelta(seconds=max(deadline - time.monotonic(), 0.001)))
            if self._then is not None:
                self._then()
        except Exception as e:
            status = _classify(e)
            with self._lock:
                if self._status not in _TERMINAL:
                    self._status, self._error = status, e
            self._comm._work_failed(self, status, e)
            raise self._error
        with self._lock:
            self._status = WorkStatus.COMPLETED

    def wait_blocking(self, timeout: timedelta | float | None = None) -> None:
        self.wait(timeout)

    def __repr__(self):
        return f"TorchWork(status={self.status().name})"
