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

GRAPH_BACKEND_VARIABLE = "NPUSIM_VLLM_GRAPH_BACKEND"  # the compile backend of graph mode's pieces
WORKER_CLS = "torch_npu_sim.integrations.vllm.worker.NpuSimWorker"
# plain torch.distributed on the device group, i.e. the npusim backend (vLLM's CPU
# communicator would route TP collectives through its own shared-memory kernels instead)
GRAPH_WRAPPER_CLS = "torch_npu_sim.integrations.vllm.graphs.NpuSimGraphWrapper"
COMMUNICATOR_CLS = "vllm.distributed.device_communicators.base_device_communicator.DeviceCommunicatorBase"
# vLLM's CPU attention, capturable in full decode graphs (attention.py)
ATTENTION_BACKEND_CLS = "torch_npu_sim.integrations.vllm.attention.NpuSimAttentionBackend"


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

    def is_sleep_mode_available(self) -> bool:
        return True  # tagged npusim pools (sleep.py)

    @classmethod
    def get_device_communicator_cls(cls) -> str:
        return COMMUNICATOR_CLS

    @classmethod
    def get_current_memory_usage(cls, device: torch.types.Device | None = None) -> float:
        torch.npusim.reset_peak_memory_stats(device)
        return torch.npusim.max_memory_allocated(device)

    @classmethod
    def get_attn_backend_cls(cls, selected_backend, attn_selector_config, num_heads: int | None = None) -> str:
        # where the CPU platform picks its standard attention, npusim's subclass of it (MLA and
        # the rest keep the CPU platform's choice, without full graphs)
        path = super().get_attn_backend_cls(selected_backend, attn_selector_config, num_heads)
        from vllm.v1.attention.backends.registry import AttentionBackendEnum

        return ATTENTION_BACKEND_CLS if path == AttentionBackendEnum.CPU_ATTN.get_path() else path

    @classmethod
    def support_static_graph_mode(cls) -> bool:
        return True

    @classmethod
    def get_static_graph_wrapper_cls(cls) -> str:
        return GRAPH_WRAPPER_CLS

    @classmethod
    def graph_pool_handle(cls):
        return torch.npusim.graph_pool_handle()

    @classmethod
    def check_and_update_config(cls, vllm_config: VllmConfig) -> None:
        check_vllm()
        model_config = vllm_config.model_config
        parallel_config = vllm_config.parallel_config
        if parallel_config.worker_cls in ("auto", "vllm.v1.worker.cpu_worker.CPUWorker"):
            parallel_config.worker_cls = WORKER_CLS
        async_scheduling = vllm_config.scheduler_config.async_scheduling
        compilation_config = vllm_config.compilation_config
        capture_sizes = list(compilation_config.cudagraph_capture_sizes or [])
        compilation_mode = compilation_config.mode
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
        _keep_graph_mode(compilation_config, capture_sizes, compilation_mode)
        per_node = parallel_config.tensor_parallel_size * parallel_config.pipeline_parallel_size
        _unbind_threads_when_devices_outnumber_numa_nodes(per_node)
        _share_cores_among_unbound_workers(per_node)
        count = torch.npusim.device_count()
        if parallel_config.nnodes <= 1 and per_node > count:
            raise ValueError(
                f"tensor_parallel_size x pipeline_parallel_size = {per_node} needs {per_node} npusim devices, "
                f"but this host has {count} (set NPUSIM_DEVICE_COUNT)")


def _keep_graph_mode(compilation_config, capture_sizes: list[int], compilation_mode) -> None:
    """The CPU platform empties the graph capture sizes (the CPU has no graphs) and turns
    VLLM_COMPILE into a single Dynamo trace (no piecewise split). npusim has graphs: the sizes
    vLLM chose stay, and so does VLLM_COMPILE where the graph mode captures pieces.
    Compiled code runs on Inductor (npusim graphs record its C++ kernels as host nodes), with
    `emulate_precision_casts` on unless the user set it: Inductor's fused kernels otherwise keep
    bf16 intermediates in fp32 (SiluAndMul's silu output, which eager code rounds to bf16
    before the multiply), so bf16 tokens drift from the eager engine's; with the casts
    emulated they are the same. NPUSIM_VLLM_GRAPH_BACKEND=eager runs Dynamo's graphs op by op instead
    (no compile time, slower replays). vLLM's fusion passes are off (their patterns are
    CUDA's). `enforce_eager` (cudagraph_mode NONE) keeps the CPU platform's settings. Tensor
    and pipeline parallel engines keep graph mode: a collective inside a captured piece (the
    tensor-parallel all-reduce) is recorded and issued again by each replay."""
    from vllm.config import CompilationMode, CUDAGraphMode

    mode = compilation_config.cudagraph_mode
    if mode is None or mode == CUDAGraphMode.NONE or not capture_sizes:
        return
    compilation_config.cudagraph_capture_sizes = capture_sizes
    if compilation_mode == CompilationMode.VLLM_COMPILE and mode.requires_piecewise_compilation():
        compilation_config.mode = CompilationMode.VLLM_COMPILE
    if compilation_config.mode != CompilationMode.NONE:
        compilation_config.backend = os.environ.get(GRAPH_BACKEND_VARIABLE) or "inductor"
        if compilation_config.backend == "inductor":
            compilation_config.inductor_compile_config.setdefault("emulate_precision_casts", True)
        pass_config = compilation_config.pass_config
        for name in type(pass_config).model_fields if hasattr(type(pass_config), "model_fields") \
                else vars(pass_config):
            if name.startswith(("fuse_", "enable_")) and getattr(pass_config, name):
                setattr(pass_config, name, False)
    logger.info("npusim graph mode: cudagraph_mode %s, compilation mode %s (backend %s), capture sizes %s",
                mode.name, compilation_config.mode.name, compilation_config.backend, capture_sizes)


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


def _share_cores_among_unbound_workers(local_workers: int) -> None:
    """Unbound workers would each start as many OpenMP threads as the host has cores, and
    their spinning threads then fight over the cores (graph-mode tensor parallel 2 on 2
    cores: 147 tok/s with 2 threads a worker, 1754 with 1). Unless the user chose
    OMP_NUM_THREADS, each worker gets its share of the cores (the workers inherit the
    variable when vLLM starts them)."""
    if local_workers <= 1 or os.environ.get("VLLM_CPU_OMP_THREADS_BIND") != "nobind" or "OMP_NUM_THREADS" in os.environ:
        return
    share = max(1, len(os.sched_getaffinity(0)) // local_workers)
    logger.info("%d unbound npusim workers share the host's cores: %d OpenMP thread(s) each "
                "(set OMP_NUM_THREADS to choose)", local_workers, share)
    os.environ["OMP_NUM_THREADS"] = str(share)
