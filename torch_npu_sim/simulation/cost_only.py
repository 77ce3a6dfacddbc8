"""Cost-only execution: run the real program, charge every launch, compute nothing.

While it is on, npusim does not execute kernels, copies or collective payload movement:

- every op still runs through the dispatcher; its outputs get their shapes, strides and
  dtypes from the op's Meta kernel and are allocated on the device, so the caching allocator,
  ``torch.npusim.max_memory_allocated()`` and out-of-memory at the chip's capacity behave as
  in a real run, but device memory is only reserved, never written (a model far larger than
  the host's memory fits in its address space);
- every kernel, copy and fill is charged its cost on its stream's simulated clock (the cost
  model is turned on with the mode);
- collectives still meet: each rank exchanges the op's descriptor with its peers (so
  mismatched collectives and dead peers fail as in a real run, within the group's timeout),
  and each is charged its modelled time; no payload moves.

Values do not exist, so:

- ops whose output *shapes* depend on values (``nonzero``, ``masked_select``, ``unique``,
  boolean-mask indexing) raise an error naming the op;
- a device value read by the host (``loss.item()``, ``int(tokens)``, ``.cpu()``, a grad norm
  being logged) is charged as the copy it is and gives zeros (0, 0.0, False) as placeholders,
  so that programs which only log values keep running (a zero loss is finite, where NaN would
  trip training loops' finiteness checks). A zero that decides control flow takes that branch:
  ``host_reads="error"`` refuses every host read instead, naming it, to find such reads;
- tensors computed in cost-only mode hold no meaningful values afterwards.

    >>> from torch_npu_sim import simulation as sim
    >>> sim.set_chip("h100-sxm5-80gb")
    >>> with sim.cost_only():
    ...     step(model, batch)
    >>> sim.sim_time(), torch.npusim.max_memory_allocated()

``NPUSIM_COST_ONLY=1`` turns it on for a whole process (read when torch_npu_sim loads);
``NPUSIM_COST_ONLY_HOST_READS=error`` refuses host reads.
"""
from __future__ import annotations

import contextlib

import torch

__all__ = ["cost_only", "set_cost_only", "is_cost_only"]


HOST_READS = ("zeros", "error")


def set_cost_only(on: bool = True, host_reads: str | None = None) -> None:
    """Turns cost-only execution on or off for the whole process (every thread and device).

    Turning it on also turns the cost model on. Set it before the work to be predicted starts.
    ``host_reads``: "zeros" (the default) or "error" (see the module's docstring); None keeps it.
    """
    if not isinstance(on, bool):
        raise TypeError(f"set_cost_only expects a bool, got {type(on).__name__}")
    if host_reads is not None and host_reads not in HOST_READS:
        raise ValueError(f"host_reads must be one of {HOST_READS}, got {host_reads!r}")
    ops = torch.ops.npusim_sim
    if host_reads is not None:
        ops.set_refuse_host_reads(host_reads == "error")
    if on:
        ops.set_cost_model(True)
    ops.set_cost_only(on)


def host_reads() -> str:
    return "error" if torch.ops.npusim_sim.refuse_host_reads() else "zeros"


def is_cost_only() -> bool:
    return bool(torch.ops.npusim_sim.cost_only())


@contextlib.contextmanager
def cost_only(host_reads: str | None = None):
    """Cost-only execution inside the block; the previous settings are restored after it."""
    before, reads_before = is_cost_only(), globals()["host_reads"]()
    set_cost_only(True, host_reads)
    try:
        yield
    finally:
        set_cost_only(before, reads_before)
