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
* a failed collective's ``wait()`` does not raise: the failure is kept and ``errored()``
  reports it (as does the backend's health), so the Manager refuses to commit the step and
  reconfigures at the next quorum, and later collectives of this configuration return at
  once. torchft's ``DistributedDataParallel`` needs this: its communication hook fails on
  an assertion when a gradient allreduce's ``wait()`` raises (torchft 0.2.0);
* ``abort()`` fails in-flight work at once and closes the group, so the peers still on it
  hear this rank leave instead of waiting for the timeout.
"""
from __future__ import annotations

import importlib.metadata
import warnings
from datetime import timedelta
from typing import List, Optional

import torch
import torch.distributed as dist
try:
    from torchft.process_group import ProcessGroupWrapper
except ImportError as error:  # an optional extra
    raise ImportError("torch_npu_sim.integrations.torchft needs torchft==0.2.0, the `torchft` extra "
                      "(bash scripts/install_torchft.sh)") from error

BACKEND_NAME = "torchft-npusim"
# torchft versions the internals this relies on (_private_torch.TORCHFT_PRIVATE_USES) were checked on
CHECKED_TORCHFT_VERSIONS = ("0.2.0",)
_PRIVATE_TORCH = ("torch.distributed:ProcessGroup._set_default_backend",
                  "torch.distributed:ProcessGroup._register_backend")

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
        if self._error is not None:
            return _CompletedWork(tensors)
        try:
            return _ErrorRecordingWork(self, super().allreduce(tensors, opts))
        except Exception as error:  # this configuration had already failed
            self.report_error(error)
            return _CompletedWork(tensors)

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


class _ErrorRecordingWork(dist.Work):
    """A collective whose ``wait()`` records a failure on the group instead of raising; its
    future still fails (torchft's Manager swallows and reports that itself)."""

    def __init__(self, pg: ProcessGroupNpuSim, work: dist.Work) -> None:
        super().__init__()
        self._pg, self._work = pg, work

    def wait(self, timeout: Optional[timedelta] = None) -> bool:
        try:
            return self._work.wait() if timeout is None else self._work.wait(timeout)
        except Exception as error:
            self._pg.report_error(error)
            return True

    def get_future(self) -> torch.futures.Future:
        return self._work.get_future()


class _CompletedWork(dist.Work):
    """A collective skipped because its configuration has failed: done, its tensors unchanged."""

    def __init__(self, tensors: List[torch.Tensor]) -> None:
        super().__init__()
        self._future = torch.futures.Future()
        self._future.set_result(tensors)

    def wait(self, timeout: Optional[timedelta] = None) -> bool:
        return True

    def get_future(self) -> torch.futures.Future:
        return self._future
