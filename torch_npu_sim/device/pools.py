"""Tagged memory pools that can sleep: device memory grouped by tag that gives its device
capacity back and later takes it again at the same addresses (CUDA does this with its
virtual-memory API; vLLM's sleep mode, used by RL frameworks between rollouts, needs it).

    pools = torch.npusim.pools.TaggedPools()
    with pools.use_memory_pool("weights"):
        model = load()                      # its memory is the "weights" pool's
    pools.sleep(offload_tags=("weights",))  # weights copied to host memory, device memory freed
    pools.wake_up()                         # the same addresses again, weights restored

A pool that sleeps without being offloaded loses its contents (they read as zeros after
waking). Tensors of a sleeping pool must not be used until it wakes up.
"""
from __future__ import annotations

import contextlib

import torch

from .. import _C
from ._device import _device_index, synchronize
from .graphs import graph_pool_handle


class TaggedPools:
    def __init__(self, device=None) -> None:
        self.device = _device_index(device, optional=True)
        self._pools: dict[str, tuple[int, int]] = {}

    def _pool(self, tag: str) -> tuple[int, int]:
        if tag not in self._pools:
            pool = graph_pool_handle()
            _C._pool_retain(self.device, pool)  # kept reserved for the life of these pools
            self._pools[tag] = pool
        return self._pools[tag]

    @contextlib.contextmanager
    def use_memory_pool(self, tag: str = "default"):
        """Allocations on the current stream of the device inside the block come from the pool
        of `tag` (scopes nest: the innermost wins)."""
        pool = self._pool(tag)
        _C._pool_begin_allocation(self.device, pool)
        try:
            yield
        finally:
            _C._pool_end_allocation(self.device)

    def sleep(self, offload_tags: tuple[str, ...] | str | None = None) -> int:
        """Gives the device memory of every pool back; the contents of the pools in
        `offload_tags` are kept in host memory first. Returns the bytes given back."""
        if isinstance(offload_tags, str):
            offload_tags = (offload_tags,)
        offload = set(offload_tags or ())
        synchronize(self.device)
        return sum(_C._pool_sleep(self.device, pool, tag in offload) for tag, pool in self._pools.items())

    def discard(self, tags: tuple[str, ...] | str) -> int:
        """Gives the device memory of the pools in `tags` back, dropping their contents."""
        tags = (tags,) if isinstance(tags, str) else tags
        synchronize(self.device)
        return sum(_C._pool_sleep(self.device, self._pools[t], False) for t in tags if t in self._pools)

    def wake_up(self, tags: list[str] | None = None) -> None:
        """Takes the device memory of the pools in `tags` (all if None) again and restores
        what was offloaded; raises torch.OutOfMemoryError if the device lacks the room."""
        for tag, pool in self._pools.items():
            if tags is None or tag in tags:
                _C._pool_wake(self.device, pool)

    def get_current_usage(self) -> int:
        """Bytes reserved by all the pools (asleep or not)."""
        return sum(_C._graph_pool_reserved_bytes(self.device, pool) for pool in self._pools.values())

    def tags(self) -> list[str]:
        return list(self._pools)


__all__ = ["TaggedPools"]
