"""NpuSimPlatform: vLLM's view of the npusim device.

npusim runs vLLM's CPU kernels (attention, rotary, rms_norm) on device memory: in CPU mode
device memory is host memory, and the zero-copy fallback hands those kernels aliases of it.
Linear layers run torch's linear on npusim weights (the model runner sees to it: vLLM's
oneDNN linear allocates its output on the CPU). So the platform keeps the CPU platform's
other kernel choices (it is a CpuPlatform to vLLM's `is_cpu()` checks) and changes what
makes it a device: tensors, weights and the KV cache on `npusim:<local_rank>`, memory
budgets against npusim's capacity, collectives on the npusim c10d backend, pinned memory,
real streams and events, and async scheduling. It refuses a vLLM other than the one it was
checked on (internals.py).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from vllm.logger import init_logger
from vllm.platforms.cpu import CpuPlatform

from .internals import check_vllm

if TYPE_CHECKING:
    from vllm.config import VllmConfig

logger = init_logger(f"vllm.{__name__}")  # under "vllm", whose logging vLLM configures

WORKER_CLS = "torch_npu_sim.integrations.vllm.worker.NpuSimWorker"
# plain torch.distributed on the device group, i.e. the npusim backend (vLLM's CPU
# communicator would route TP collectives through its own shared-memory kernels instead)
COMMUNICATOR_CLS = "vllm.distributed.device_communicators.base_device_communicator.DeviceCommunicatorBase"


class NpuSimPlatform(CpuPlatform):
    device_name: str = "npusim"
    device_type: str = "npusim"
    dispatch_key: str = "PrivateUse1"
    dist_backend: str = "npusim"
    simple_compile_backend: str = "eager"

    @classmethod
    def get_device_name(cls, device_id: int = 0) -> str:
        return torch.npusim.get_device_name(device_id)

    @classmethod
    def get_device_total_memory(cls, device_id: int = 0) -> int:
        return torch.npusim.get_device_properties(device_id).total_memory

    @classmethod
    def set_device(cls, device: torch.device) -> None:
        torch.npusim.set_device(device)

    @classmethod
    def manual_seed_all(cls, seed: int) -> None:
        torch.npusim.manual_seed_all(seed)

    @classmethod
    def is_pin_memory_available(cls) -> bool:
        return True

    @classmethod
    def check_if_supports_dtype(cls, dtype: torch.dtype) -> None:
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"npusim serves models in float32, bfloat16 or float16, not {dtype}")

    @classmethod
    def get_device_communicator_cls(cls) -> str:
        return COMMUNICATOR_CLS

    @classmethod
    def get_current_memory_usage(cls, device: torch.types.Device | None = None) -> float:
        torch.npusim.reset_peak_memory_stats(device)
        return torch.npusim.max_memory_allocated(device)

    @classmethod
    def check_and_update_config(cls, vllm_config: VllmConfig) -> None:
        check_vllm()
        model_config = vllm_config.model_config
        if model_config is not None and model_config.enable_sleep_mode:
            raise ValueError("vLLM's sleep mode is not supported on npusim (it needs a CUDA virtual-memory allocator)")
        parallel_config = vllm_config.parallel_config
        if parallel_config.worker_cls in ("auto", "vllm.v1.worker.cpu_worker.CPUWorker"):
            parallel_config.worker_cls = WORKER_CLS
        async_scheduling = vllm_config.scheduler_config.async_scheduling
        device_config = vllm_config.device_config
        # The CPU platform's settings apply (block size, compilation, thread and
        # allocator environment), but it insists on the "cpu" device type and turns
        # async scheduling off because the CPU has no streams; npusim has both.
        device_config.device_type = "cpu"
        try:
            super().check_and_update_config(vllm_config)
        finally:
            device_config.device_type = cls.device_type
        vllm_config.scheduler_config.async_scheduling = async_scheduling
        per_node = parallel_config.tensor_parallel_size * parallel_config.pipeline_parallel_size
        _unbind_threads_when_devices_outnumber_numa_nodes(per_node)
        count = torch.npusim.device_count()
        if parallel_config.nnodes <= 1 and per_node > count:
            raise ValueError(
                f"tensor_parallel_size x pipeline_parallel_size = {per_node} needs {per_node} npusim devices, "
                f"but this host has {count} (set NPUSIM_DEVICE_COUNT)")


def _unbind_threads_when_devices_outnumber_numa_nodes(local_workers: int) -> None:
    """vLLM's CPU path pins each worker's threads to its own NUMA node and refuses more
    workers than nodes. Simulated devices usually outnumber the host's nodes (8 NPUs on a
    one-node laptop), so unless the user chose a binding, threads are left unbound."""
    if local_workers <= 1 or "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
        return
    from vllm.utils.cpu_resource_utils import get_visible_memory_node

    nodes = len(get_visible_memory_node())
    if local_workers > nodes:
        logger.info("%d npusim workers on %d NUMA node(s): worker threads are not bound "
                    "(set VLLM_CPU_OMP_THREADS_BIND to choose)", local_workers, nodes)
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
