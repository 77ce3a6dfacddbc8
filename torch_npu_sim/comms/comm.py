"""TorchComm: a communicator's life cycle (init, split, abort, finalize, reconfigure).

Each communicator (and each generation of a reconfigurable one) is one c10d backend of
npusim (``ProcessGroupNpuSim``), built directly on a PrefixStore of its own, so any number
of communicators share one store without their keys meeting.
"""
import json
import os
import sys
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from . import handles as _handles
from .collectives import Collectives
from .work import TorchWork, WorkStatus

BACKEND = "npusim"
DEFAULT_TIMEOUT = timedelta(seconds=600)  # TorchComms' default


@dataclass
class CommOptions:
    abort_process_on_timeout_or_error: bool = True
    timeout: timedelta = DEFAULT_TIMEOUT
    store: object = None
    name: str = ""
    enable_reconfigure: bool = False
    hints: dict = field(default_factory=dict)


class RemovableHandle:
    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _as_timedelta(t, default):
    if t is None:
        return default
    return t if isinstance(t, timedelta) else timedelta(seconds=float(t))


def create_backend(store, rank: int, size: int, timeout: timedelta, name: str):
    from .. import _C

    _C._init_distributed()
    return _C._create_process_group(store, rank, size, timeout.total_seconds(), name)


class TorchComm(Collectives):
    """A communicator over a fixed set of ranks; see the package docstring for the API."""

    def __init__(self, name: str, device: torch.device, options: CommOptions, store, global_ranks=None):
        self._name = name
        self._device = device
        self._options = options
        self._base_store = store  # the root of every key this communicator (and its generations) uses
        self._gen_store = None
        self._backend = None
        self._rank, self._size = -1, 0
        self._global_ranks = global_ranks
        self._state = "uninitialized"
        self._aborted = False
        self._error = None
        self._uuid = -1
        self._used_uuids = set()
        self._generation = 0
        self._split_seq = 0
        self._token = _handles.new_token()
        self._abort_hooks = []
        self._lock = threading.Lock()

    def _start(self, store, rank: int, size: int, timeout: timedelta) -> None:
        backend = create_backend(store, rank, size, timeout, self._name)
        if timeout != self._options.timeout:
            backend.set_timeout(self._options.timeout)
        with self._lock:
            self._backend, self._gen_store = backend, store
            self._rank, self._size = rank, size
            self._aborted, self._error = False, None
            self._split_seq = 0
            self._state = "initialized"

    # ------------------------------------------------------------------ queries
    def get_rank(self) -> int:
        self._check_initialized()
        return self._rank

    def get_size(self) -> int:
        self._check_initialized()
        return self._size

    def get_name(self) -> str:
        return self._name

    def get_device(self) -> torch.device:
        return self._device

    def get_backend(self) -> str:
        return BACKEND

    def get_backend_version(self) -> str:
        return "1"

    def get_options(self) -> CommOptions:
        return self._options

    def get_backend_impl(self):
        """The c10d backend under this communicator (no compatibility promises)."""
        return self._backend

    def set_timeout(self, timeout) -> None:
        self._options.timeout = _as_timedelta(timeout, DEFAULT_TIMEOUT)
        if self._backend is not None:
            self._backend.set_timeout(self._options.timeout)

    def set_hints(self, hints) -> None:
        self._options.hints = dict(hints)

    def is_abort_supported(self) -> bool:
        return True

    def is_aborted(self) -> bool:
        """True after abort(), and after an operation failed or timed out (until reconfigure)."""
        return self._aborted or self._error is not None

    def register_abort_hook(self, callback) -> RemovableHandle:
        self._abort_hooks.append(callback)
        return RemovableHandle(self._abort_hooks, callback)

    def __repr__(self):
        where = f"rank {self._rank}/{self._size}" if self._state == "initialized" else self._state
        return f"TorchComm(name={self._name!r}, backend={BACKEND!r}, {where}, device={self._device})"

    # ------------------------------------------------------------------ state checks
    def _check_initialized(self):
        if self._state == "uninitialized":
            hint = ": call reconfigure() first" if self._options.enable_reconfigure else ""
            raise RuntimeError(f"communicator '{self._name}' is not initialized{hint}")
        if self._state == "finalized":
            raise RuntimeError(f"communicator '{self._name}' was finalized")

    def _live(self, op_name: str):
        self._check_initialized()
        again = ("reconfigure() it to use it again" if self._options.enable_reconfigure
                 else "create a new communicator")
        if self._aborted:
            raise RuntimeError(f"{op_name} on communicator '{self._name}', which was aborted on this rank; {again}")
        if self._error is not None:
            raise RuntimeError(f"{op_name} on communicator '{self._name}', which failed earlier "
                               f"({self._error}); {again}")
        return self._backend

    def _work_failed(self, work: TorchWork, status: WorkStatus, error: BaseException) -> None:
        if work._generation != self._generation:
            return  # work of a generation that reconfigure already replaced
        backend = self._backend
        with self._lock:
            if self._error is None:
                self._error = error
            by_abort = self._aborted
        if status is WorkStatus.TIMEDOUT and backend is not None:
            backend.abort()  # the operation may still be in flight: nothing after it can run
        if by_abort:
            return
        if self._options.abort_process_on_timeout_or_error and not self._options.enable_reconfigure:
            sys.stderr.write(f"communicator '{self._name}' rank {self._rank}: {status.name}: {error}\n"
                             "aborting the process (abort_process_on_timeout_or_error=True)\n")
            sys.stderr.flush()
            self._run_abort_hooks()
            os.abort()

    def _run_abort_hooks(self):
        for hook in list(self._abort_hooks):
            try:
                hook()
            except Exception as e:  # a hook must not stop the others or the abort
                sys.stderr.write(f"abort hook {hook!r} raised {e!r}\n")

    # ------------------------------------------------------------------ life cycle
    def abort(self) -> None:
        """Fails every operation in flight or queued (at once: well under 100 ms) and every
        later one. Non-blocking, thread-safe, idempotent, never raises."""
        with self._lock:
            if self._aborted:
                return
            self._aborted = True
            backend = self._backend
        if backend is not None:
            try:
                backend.abort()
            except Exception:
                pass
        self._run_abort_hooks()

    def finalize(self) -> None:
        """Waits for the operations already issued, then releases the communicator. Any
        later call raises. Raises if never initialized or already finalized."""
        self._check_initialized()
        with self._lock:
            backend, self._backend, self._state = self._backend, None, "finalized"
        if self._aborted or self._error is not None:
            backend.abort()
        backend.shutdown()

    def split(self, ranks, name: str, hints=None, timeout=None):
        """A communicator over `ranks` (ranks of this one; the new rank of each is its
        position in the list). Every rank of this communicator calls split, in the same
        order relative to its other splits; the members of one new communicator pass the
        same list, a rank in none passes ``[]`` and gets None. Several disjoint lists may be
        split off at once."""
        self._live("split")
        ranks = list(ranks)
        size = self._size
        for r in ranks:
            if not isinstance(r, int) or not 0 <= r < size:
                raise RuntimeError(f"split of '{self._name}': invalid rank {r!r} in ranks; valid ranks are 0 to {size - 1}")
        if len(set(ranks)) != len(ranks):
            raise RuntimeError(f"split of '{self._name}': a rank appears more than once in {ranks}")
        if ranks and self._rank not in ranks:
            raise RuntimeError(f"split of '{self._name}': current rank {self._rank} is not in the ranks list {ranks}")
        self._split_seq += 1
        if not ranks:
            return None
        timeout = _as_timedelta(timeout, self._options.timeout)
        color = min(ranks)
        store = dist.PrefixStore(f"split/{self._split_seq}/{color}", self._gen_store)
        store.set(f"ranks/{self._rank}", json.dumps(ranks))
        keys = [f"ranks/{r}" for r in ranks]
        store.wait(keys, timeout)
        for r, key in zip(ranks, keys):
            theirs = json.loads(store.get(key))
            if theirs != ranks:
                raise RuntimeError(f"split of '{self._name}': rank {r} passed ranks {theirs}, this rank {ranks}")
        global_ranks = [self._global_ranks[r] for r in ranks] if self._global_ranks else ranks
        options = CommOptions(self._options.abort_process_on_timeout_or_error, timeout, None, name, False,
                              dict(hints or {}))
        child = TorchComm(name, self._device, options, store, global_ranks)
        child._start(store, ranks.index(self._rank), len(ranks), timeout)
        return child

    # ------------------------------------------------------------------ reconfigure
    def get_init_handle(self) -> str:
        """This process's handle for reconfigure(): exchange it with the other participants
        (e.g. through a store) and pass all of them. Take it anew after each reconfigure."""
        rank = self._rank if self._state == "initialized" else -1
        return _handles.format_handle(rank, self._uuid, self._token, _handles.store_address(self._base_store))

    def reconfigure(self, uuid: int, init_handles, timeout=None, hints=None) -> TorchWork:
        """Makes this communicator span the processes whose handles are given (all of them
        call reconfigure with the same uuid and handles): survivors of a failure plus any
        new processes, without restarting anyone. Ranks: see handles.py. Blocks until the
        new communicator is up and returns a completed work."""
        if not self._options.enable_reconfigure:
            raise RuntimeError(f"reconfigure of '{self._name}': create the communicator with enable_reconfigure=True")
        if self._state == "finalized":
            raise RuntimeError(f"communicator '{self._name}' was finalized")
        if not isinstance(uuid, int) or uuid < 0:
            raise RuntimeError(f"reconfigure of '{self._name}': uuid must be a non-negative int, got {uuid!r}")
        if uuid in self._used_uuids:
            raise RuntimeError(f"reconfigure of '{self._name}': uuid {uuid} was used before on this communicator")
        order = _handles.assign_ranks(init_handles)
        tokens = [info.token for info in order]
        if self._token not in tokens:
            raise RuntimeError(f"reconfigure of '{self._name}': this process's init handle "
                               f"({self.get_init_handle()}) is not among init_handles")
        with self._lock:
            old, self._backend = self._backend, None
            self._generation += 1
            self._state = "uninitialized"
        if old is not None:
            old.abort()  # fails whatever the old generation still had in flight
            try:
                old.shutdown()
            except Exception:
                pass
        self._used_uuids.add(uuid)
        store = dist.PrefixStore(f"reconfigure/{uuid}", self._base_store)
        self._start(store, tokens.index(self._token), len(tokens), _as_timedelta(timeout, self._options.timeout))
        self._uuid = uuid
        return TorchWork(self)


# ------------------------------------------------------------------------- creation
_env_stores = {}


def _env_int(*names):
    for n in names:
        if os.environ.get(n, "").strip():
            return int(os.environ[n])
    return None


def _rank_and_size():
    rank = _env_int("TORCHCOMM_RANK", "RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
    size = _env_int("TORCHCOMM_SIZE", "WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
    if rank is None or size is None:
        raise RuntimeError("new_comm: set RANK and WORLD_SIZE (or TORCHCOMM_RANK/TORCHCOMM_SIZE), as torchrun does")
    if not 0 <= rank < size:
        raise RuntimeError(f"new_comm: rank {rank} is not in 0..{size - 1}")
    return rank, size


def _store_from_env(rank, timeout):
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not addr or not port:
        raise RuntimeError("new_comm: pass store= or set MASTER_ADDR and MASTER_PORT")
    key = (addr, int(port))
    if key not in _env_stores:  # one per process: rank 0 hosts it
        _env_stores[key] = dist.TCPStore(addr, int(port), is_master=(rank == 0), timeout=timeout,
                                         wait_for_workers=False)
    return _env_stores[key]


def _resolve_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == "npusim" and device.index is None:
        local = _env_int("LOCAL_RANK")
        count = torch.npusim.device_count()
        index = local % count if local is not None and count else torch.npusim.current_device()
        device = torch.device("npusim", index)
    if device.type not in ("npusim", "cpu"):
        raise ValueError(f"new_comm: backend 'npusim' runs on npusim or cpu devices, got {device}")
    return device


def new_comm(backend: str, device, name: str | None = None, abort_process_on_timeout_or_error: bool | None = None,
             timeout=None, is_high_priority_stream: bool | None = None, store=None,
             enable_reconfigure: bool = False, hints: dict | None = None) -> TorchComm:
    """Creates a communicator; every rank calls it at once (unless `enable_reconfigure`).

    Rank and size come from the environment (TORCHCOMM_RANK/TORCHCOMM_SIZE, RANK/WORLD_SIZE
    or MPI's); the store is `store`, else a TCPStore at MASTER_ADDR:MASTER_PORT hosted by
    rank 0. With `enable_reconfigure` nothing is joined yet: call reconfigure() (whose
    participants must reach the same store, so host it where it outlives any rank).
    """
    if backend != BACKEND:
        raise ValueError(f"new_comm: unknown backend {backend!r}; this package provides {BACKEND!r}")
    name = name or "default"
    timeout = _as_timedelta(timeout, DEFAULT_TIMEOUT)
    device = _resolve_device(device)
    if abort_process_on_timeout_or_error is None:
        abort_process_on_timeout_or_error = True
    rank = size = None
    if not enable_reconfigure:
        rank, size = _rank_and_size()
    if store is None:
        store = _store_from_env(rank if rank is not None else _env_int("TORCHCOMM_RANK", "RANK"), timeout)
    options = CommOptions(abort_process_on_timeout_or_error, timeout, store, name, enable_reconfigure,
                          dict(hints or {}))
    comm = TorchComm(name, device, options, dist.PrefixStore(f"torchcomm/{name}", store))
    if not enable_reconfigure:
        comm._start(dist.PrefixStore("init", comm._base_store), rank, size, timeout)
    return comm
