"""npusim as a torchft process group: ``ProcessGroupNpuSim`` (torchft's reconfigurable life cycle).

torchft reconfigures a replica group's process group at every new quorum:
``configure(store_addr, replica_id, rank, world_size, ...)`` tears the previous group down
and builds a new one from a fresh store prefix. As torchft's ``ProcessGroupGloo`` does with
a gloo backend, each configure here creates a new npusim c10d backend
(``torch_npu_sim._C.ProcessGroupNpuSim``) on that store and registers it for npusim and CPU
tensors. What torchft relies on beside the collectives:

* a dead peer never hangs a collective: the npusim backend sees a killed rank's control
  connection close and fails pending and later work with ``DistBackendError`` naming it,
  and everything else is bounded by ``timeout``;
* a failed allreduce never passes for a successful one. The failure is kept on the group
  (``errored()`` reports it, as does the backend's health, so the Manager refuses to commit
  the step and reconfigures at the next quorum), the work's future carries it, and
  ``wait()`` raises it; later allreduces of this configuration are not run and fail the
  same way at once, their tensors untouched. The one exception is torchft's Manager: when
  the waiter is its ``_ManagedWork.wait`` (the work ``Manager.allreduce`` returns),
  ``wait()`` returns False instead of raising, because torchft 0.2.0 builds the work's
  callback chain only after that call returns (its DDP communication hook fails on an
  assertion otherwise); the Manager then meets the error in the future, through
  ``Manager.wrap_future``, which reports it (``report_error``) and hands on the local
  tensor, and the step is not committed. Any other caller gets the exception;
* ``abort()`` fails in-flight work at once and closes the group, so the peers still on it
  hear this rank leave instead of waiting for the timeout.
"""
from __future__ import annotations

import importlib.metadata
import sys
import warnings
from datetime import timedelta
from typing import List, Optional

import torch
import torch.distributed as dist
try:
    import torchft.manager
    from torchft.process_group import ProcessGroupWrapper
except ImportError as error:  # an optional extra
    raise ImportError("torch_npu_sim.integrations.torchft needs torchft==0.2.0, the `torchft` extra "
                      "(bash scripts/install_torchft.sh)") from error

BACKEND_NAME = "torchft-npusim"
# torchft versions the internals this relies on (_private_torch.TORCHFT_PRIVATE_USES) were checked on
CHECKED_TORCHFT_VERSIONS = ("0.2.0",)
_PRIVATE_TORCH = ("torch.distributed:ProcessGroup._set_default_backend",
                  "torch.distributed:ProcessGroup._register_backend")
# the Manager's wrapper of a process group's work: the one waiter that gets False, not the error
_MANAGER_WAIT = getattr(getattr(torchft.manager, "_ManagedWork", None), "wait", None)

if importlib.metadata.version("torchft") not in CHECKED_TORCHFT_VERSIONS:
    warnings.warn(f"torch_npu_sim: torchft {importlib.metadata.version('torchft')} is not one of "
                  f"{CHECKED_TORCHFT_VERSIONS}, which ProcessGroupNpuSim was checked on (it relies on the torchft "
                  "internals listed in torch_npu_sim/_private_torch.py, TORCHFT_PRIVATE_USES)", RuntimeWarning)


class ProcessGroupNpuSim(ProcessGroupWrapper):
    """A reconfigurable npusim process group for torchft's Manager (``Manager(pg=ProcessGroupNpuSim(), ...)``).

    Args:
        timeout: bound on store operations while configuring and on every collective of
            the groups it creates (a silent peer is reported at this timeout; a killed one
            at once).
    """

    def __init__(self, timeout: timedelta = timedelta(seconds=60)) -> None:
        if not isinstance(timeout, timedelta) or timeout.total_seconds() <= 0:
            raise ValueError(f"ProcessGroupNpuSim: timeout must be a positive timedelta, got {timeout!r}")
        super().__init__(timeout=timeout)
        self._backend = None  # the npusim c10d backend of the current configuration
        self._error: Optional[Exception] = None  # the first failure of the current configuration
        self._generation = 0

    def _create_pg(self, store: dist.Store, rank: int, world_size: int) -> dist.ProcessGroup:
        from ... import _C, _private_torch

        _private_torch.require_checked_version(_PRIVATE_TORCH, "ProcessGroupNpuSim registers its backend with them")
        if not 0 <= rank < world_size:
            raise ValueError(f"ProcessGroupNpuSim: rank {rank} is outside a world of size {world_size}")
        _C._init_distributed()
        self._generation += 1
        backend = _C._create_process_group(store, rank, world_size, self._timeout.total_seconds(),
                                           f"torchft/{self._replica_id}/q{self._quorum_id}/g{self._generation}")
        pg = dist.ProcessGroup(store, rank, world_size)
        # One backend serves both devices, as in the "npusim" c10d backend's registration.
        custom = dist.ProcessGroup.BackendType.CUSTOM
        pg._set_default_backend(custom)
        for device in ("cpu", "npusim"):
            pg._register_backend(torch.device(device), custom, backend)
        self._backend, self._error = backend, None
        return pg

    def allreduce(self, tensors: List[torch.Tensor], opts: object) -> dist.Work:
        if self._error is None:
            try:
                return _CheckedWork(self, super().allreduce(tensors, opts))
            except Exception as error:  # this configuration had already failed
                self.report_error(error)
        skipped = dist.DistBackendError(f"{BACKEND_NAME}: allreduce not run: this configuration failed "
                                        f"earlier ({self._error}); tensors are unchanged")
        skipped.__cause__ = self._error
        return _CheckedWork(self, None, skipped)

    def report_error(self, error: Exception) -> None:
        """Records a failure of the current configuration (kept until the next configure)."""
        if self._error is None:
            self._error = error

    def getBackendName(self) -> str:
        return BACKEND_NAME

    @property
    def backend(self):
        """The npusim c10d backend of the current configuration (None before configure / after abort)."""
        return self._backend

    def errored(self) -> Optional[Exception]:
        if self._error is not None:
            return self._error
        backend = self._backend
        if backend is None or backend.health == "healthy":
            return None
        failed = sorted(backend.failed_ranks)
        who = f"rank(s) {failed} failed" if failed else "the group was closed"
        return dist.DistBackendError(f"{BACKEND_NAME}: group is {backend.health}: {who}")

    def abort(self, errored: bool = True) -> None:
        self._close_backend()
        super().abort(errored=errored)

    def shutdown(self) -> None:
        self._close_backend()
        super().shutdown()

    def set_timeout(self, timeout: timedelta) -> None:
        super().set_timeout(timeout)
        if self._backend is not None:
            self._backend.set_timeout(timeout)

    def _close_backend(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.abort()     # in-flight work fails now
            backend.shutdown()  # and the peers still on this group hear this rank leave


class _CheckedWork(dist.Work):
    """An allreduce of the group (`work`), or one not run (`work` None, `error` its reason).
    A failure is recorded on the group, carried by the future and raised by ``wait()``,
    except to torchft's Manager (see the module docstring), which gets False."""

    def __init__(self, pg: ProcessGroupNpuSim, work: Optional[dist.Work], error: Optional[Exception] = None) -> None:
        super().__init__()
        self._pg, self._work, self._error = pg, work, error
        if work is None:
            self._future = torch.futures.Future()
            self._future.set_exception(error)

    def wait(self, timeout: Optional[timedelta] = None) -> bool:
        if self._work is not None and self._error is None:
            try:
                return self._work.wait() if timeout is None else self._work.wait(timeout)
            except Exception as error:
                self._error = error
                self._pg.report_error(error)
        if _MANAGER_WAIT is not None and sys._getframe(1).f_code is _MANAGER_WAIT.__code__:
            return False  # the Manager meets the error in the future (Manager.wrap_future reports it)
        raise self._error

    def is_completed(self) -> bool:
        return self._work is None or self._work.is_completed()

    def get_future(self) -> torch.futures.Future:
        return self._future if self._work is None else self._work.get_future()
