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
- a floating-point value read by the host (``loss.item()``, a grad norm being logged) is a
  NaN placeholder; copies to host memory fill it with NaN (0 for integer dtypes);
- reading an integer or boolean device value on the host (``int(t)``, ``if t.any():``) raises,
  because such reads usually decide control flow or shapes;
- tensors computed in cost-only mode hold no meaningful values afterwards.

    >>> from torch_npu_sim import simulation as sim
    >>> sim.set_chip("h100-sxm5-80gb")
    >>> with sim.cost_only():
    ...     step(model, batch)
    >>> sim.sim_time(), torch.npusim.max_memory_allocated()

``NPUSIM_COST_ONLY=1`` turns it on for a whole process (read when torch_npu_sim loads).
"""
from __future__ import annotations

import contextlib

import torch

__all__ = ["cost_only", "set_cost_only", "is_cost_only"]


def set_cost_only(on: bool = True) -> None:
    """Turns cost-only execution on or off for the whole process (every thread and device).

    Turning it on also turns the cost model on. Set it before the work to be predicted starts.
    """
    if not isinstance(on, bool):
        raise TypeError(f"set_cost_only expects a bool, got {type(on).__name__}")
    ops = torch.ops.npusim_sim
    if on:
        ops.set_cost_model(True)
    ops.set_cost_only(on)


def is_cost_only() -> bool:
    return bool(torch.ops.npusim_sim.cost_only())


@contextlib.contextmanager
def cost_only():
    """Cost-only execution inside the block; the previous setting is restored after it."""
    before = is_cost_only()
    set_cost_only(True)
    try:
        yield
    finally:
        set_cost_only(before)
