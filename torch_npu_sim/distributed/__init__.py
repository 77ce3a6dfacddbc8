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


def monitored_barrier(group=None, timeout: timedelta | None = None, wait_all_ranks: bool = False) -> None:
    """``dist.monitored_barrier`` for npusim groups (torch's wrapper accepts gloo only).

    Every rank waits for every other; ranks that do not arrive within `timeout` are named
    in the DistBackendError raised on each rank that waited for them.
    """
    import torch.distributed as dist

    group = group or dist.group.WORLD
    timeout = timeout or timedelta(minutes=30)
    group.monitored_barrier(timeout, wait_all_ranks=wait_all_ranks)
