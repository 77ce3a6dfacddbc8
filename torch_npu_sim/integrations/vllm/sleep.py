"""vLLM's sleep mode on npusim (`LLM(enable_sleep_mode=True)`, `llm.sleep(level)`,
`llm.wake_up()`): the worker's weights, KV cache and runtime state are allocated from
tagged npusim pools (torch.npusim.pools.TaggedPools, CuMemAllocator's role on CUDA), which
give their device memory back while asleep and take it again at the same addresses.
Level 1 keeps the weights in host memory; level 2 keeps nothing (vLLM then reloads the
weights), as on CUDA. The KV cache is dropped at every level."""
from __future__ import annotations

from vllm.device_allocator.sleep_mode_backend import SleepModeBackend

import torch

_pools: dict[int, "torch.npusim.pools.TaggedPools"] = {}


def pools(device: torch.device) -> "torch.npusim.pools.TaggedPools":
    """The worker process's tagged pools on `device` (one set per device, as CuMemAllocator)."""
    index = device.index if device.index is not None else torch.npusim.current_device()
    if index not in _pools:
        _pools[index] = torch.npusim.pools.TaggedPools(index)
    return _pools[index]


class NpuSimSleepBackend(SleepModeBackend):
    """vLLM's sleep-mode backend interface over the worker's tagged pools."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self._pools = pools(device)

    def suspend(self, level: int = 1) -> None:
        self._state = "SUSPENDED"
        self._pools.sleep(offload_tags=("weights", "runtime") if level == 1 else ("runtime",))

    def resume(self, tags: list[str] | None = None) -> None:
        self._state = "RESUMING"
        self._pools.wake_up(tags)
        self._state = "RUNNING"

    def discard(self, tags: tuple[str, ...]) -> None:
        self._pools.discard(tags)
        self._state = "SUSPENDED"

    @classmethod
    def preserves_communicators(cls) -> bool:
        return True  # the npusim process group's memory is not in the pools

    @classmethod
    def preserves_compiled_artifacts(cls) -> bool:
        return True
