"""Collectives for npusim: the c10d backend "npusim".

``dist.init_process_group("npusim")`` (or no backend at all when the accelerator is
npusim) gives a process group whose collectives run on npusim and CPU tensors alike:
shared memory among the ranks of one host, TCP among hosts (``NPUSIM_TRANSPORT=tcp``
forces TCP). Environment: see csrc/distributed/Rendezvous.h.
"""
from datetime import timedelta

import torch

BACKEND_NAME = "npusim"


def _create_backend(dist_opts, backend_opts=None):
    from .. import _C

    timeout = dist_opts.timeout
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    return _C._create_process_group(
        dist_opts.store, dist_opts.group_rank, dist_opts.group_size, seconds, dist_opts.group_id or ""
    )


def register_backend() -> None:
    """Register the "npusim" c10d backend (called when torch_npu_sim is imported)."""
    import torch.distributed as dist

    if not dist.is_available() or BACKEND_NAME in dist.Backend.backend_list:
        return
    from .. import _C

    _C._init_distributed()
    # `devices` must be a list: a string would be iterated letter by letter.
    dist.Backend.register_backend(BACKEND_NAME, _create_backend, extended_api=True, devices=["cpu", "npusim"])
    from . import _default_backend, _shrunk_group

    _default_backend.install()
    _shrunk_group.install()


def monitored_barrier(group=None, timeout: timedelta | None = None, wait_all_ranks: bool = False) -> None:
    """``dist.monitored_barrier`` for npusim groups (torch's wrapper accepts gloo only).

    Gloo's protocol and messages: every rank other than 0 sends to rank 0 and waits for its
    answer; rank 0 waits up to `timeout` (from its call) for each rank in turn and raises
    ``RuntimeError("[Rank 0]: Rank 1 failed to pass monitoredBarrier in 2000 ms ...")`` for
    the first that did not arrive, or, with ``wait_all_ranks``, waits `timeout` for each
    and names them all (``"Ranks 1, 2 failed to pass monitoredBarrier"``); a zero timeout
    raises ``"Rank 0 timed out in monitoredBarrier after 0 ms"``. Only when all arrived does
    rank 0 answer, so the other ranks pass only if everyone did; when rank 0 fails, it tells
    them, and they raise ``"Rank k successfully reached monitoredBarrier, but received
    errors while waiting for send/recv from rank 0"`` (at once; at the group's timeout if
    rank 0 never calls). `timeout` defaults to torch's default process-group timeout; a
    float is taken as seconds (as torch does). A rank outside `group` returns at once.

    ``group.monitored_barrier(...)`` (the ProcessGroup method) runs the same protocol.
    """
    import warnings

    import torch.distributed.distributed_c10d as c10d

    if c10d._rank_not_in_group(group):
        c10d._warn_not_in_group("monitored_barrier")
        return
    pg = c10d._get_default_group() if group is None else group
    if timeout is None:
        timeout = c10d._get_default_timeout(c10d.get_backend(pg))
    elif isinstance(timeout, (int, float)):
        warnings.warn(f"Please specify timeout arg as a timedelta. Converting current value of {timeout} "
                      "assuming it represents seconds", stacklevel=2)
        timeout = timedelta(seconds=timeout)
    c10d._check_valid_timeout(timeout)

    # The protocol runs in the backend (ProcessGroupNpuSim::monitoredBarrier).
    pg.monitored_barrier(timeout, wait_all_ranks=wait_all_ranks)


def backend_of(group=None):
    """The npusim backend object (``torch_npu_sim._C.ProcessGroupNpuSim``) of `group` (default: the
    default group); TypeError if the group has no npusim backend."""
    import torch.distributed.distributed_c10d as c10d
    from .. import _C

    pg = c10d._get_default_group() if group is None else group
    for device in ("npusim", "cpu"):
        try:
            backend = pg._get_backend(torch.device(device))
        except RuntimeError:
            continue
        if isinstance(backend, _C.ProcessGroupNpuSim):
            return backend
    raise TypeError(f"process group {c10d._get_process_group_name(pg)!r} has no npusim backend")


def failed_ranks(group=None) -> list[int]:
    """Ranks of `group` (group numbering) named by its first failure: a dead, stopped or
    silent peer, or a peer that called a different collective; [] while the group is healthy.
    What recovery code passes to ``dist.shrink_group(ranks_to_exclude=...)``."""
    return sorted(backend_of(group).failed_ranks)
