"""NpuSimWorker: one vLLM worker per rank, on `npusim:<local_rank>`.

vLLM's CPU worker is the base (its kernels are the ones npusim runs), less what assumes
the CPU device: it sizes the KV cache against the host's RAM and builds its runner on
"cpu". Here the device is set before the distributed init (so the npusim backend binds
to it), and memory budgets are the device's capacity and statistics.
"""
from __future__ import annotations

import contextlib

import torch
from vllm.config import CUDAGraphMode
from vllm.logger import init_logger
from vllm.platforms import current_platform
from vllm.utils.mem_utils import format_gib
from vllm.utils.torch_utils import set_random_seed
from vllm.v1.worker.cpu_worker import CPUWorker
from vllm.v1.worker.gpu_worker import Worker, init_worker_distributed_environment
from vllm.v1.worker.workspace import init_workspace_manager, is_workspace_manager_initialized

from . import sleep
from .model_runner import NpuSimModelRunner

logger = init_logger(f"vllm.{__name__}")  # under "vllm", whose logging vLLM configures


class NpuSimWorker(CPUWorker):
    def __init__(self, vllm_config, local_rank: int, rank: int, distributed_init_method: str,
                 is_driver_worker: bool = False):
        # skips CPUWorker.__init__, which binds and budgets host memory nodes
        Worker.__init__(self, vllm_config, local_rank, rank, distributed_init_method,
                        is_driver_worker=is_driver_worker)
        self.parallel_config.disable_custom_all_reduce = True

    def init_device(self) -> None:
        count = torch.npusim.device_count()
        if self.local_rank >= count:
            raise RuntimeError(f"vLLM worker with local rank {self.local_rank} needs npusim:{self.local_rank}, "
                               f"but there are {count} npusim devices (set NPUSIM_DEVICE_COUNT)")
        self.device = torch.device("npusim", self.local_rank)
        torch.npusim.set_device(self.device)
        current_platform.check_if_supports_dtype(self.model_config.dtype)
        # vLLM's CPU kernels are catch-all host kernels: on npusim they run inside launches
        current_platform.import_kernels()
        from torch_npu_sim._op_routing import route_host_kernels

        route_host_kernels("_C")
        # vLLM's CPU code (vllm.v1.worker.cpu.shm) points torch.accelerator.get_memory_info at
        # the host's memory for the whole process; here the accelerator is npusim
        torch.accelerator.get_memory_info = torch.accelerator.memory.get_memory_info
        init_worker_distributed_environment(self.vllm_config, self.rank, self.distributed_init_method,
                                            self.local_rank, current_platform.dist_backend)
        set_random_seed(self.model_config.seed)
        self.model_runner = NpuSimModelRunner(self.vllm_config, self.device)

    def load_model(self, *args, **kwargs) -> None:
        # vLLM's GPU worker drops torch to one intra-op thread once the model is loaded (on a
        # GPU the host threads only feed the device). npusim's kernels run on those threads,
        # so they keep the count the CPU platform keeps.
        threads = torch.get_num_threads()
        super().load_model(*args, **kwargs)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

    def compile_or_warm_up_model(self):
        """The CPU worker's warm-up, then graph capture as on a GPU (vLLM's CPU worker never
        captures): one graph per capture size, FULL or PIECEWISE as the runner resolved
        cudagraph_mode against the attention backend."""
        times = super().compile_or_warm_up_model()
        if not self.model_config.enforce_eager and \
                self.compilation_config.cudagraph_mode != CUDAGraphMode.NONE:
            if not is_workspace_manager_initialized():  # vLLM locks it after capturing
                init_workspace_manager(self.device)
            self.model_runner.capture_model()
            set_random_seed(self.model_config.seed, self.parallel_config.data_parallel_index)
        return times

    def npusim_graph_stats(self) -> dict:
        """Graphs this worker captured (by npusim's count and vLLM's) and replays it ran; read
        through `LLM.collective_rpc("npusim_graph_stats")` where workers are processes."""
        from vllm.compilation.counter import compilation_counter

        from .graphs import GraphStats

        return dict(graphs_captured=GraphStats.captured, graph_replays=GraphStats.replays,
                    vllm_graphs_captured=compilation_counter.num_cudagraph_captured,
                    cudagraph_mode=self.compilation_config.cudagraph_mode.name,
                    compilation_mode=self.compilation_config.mode.name,
                    cudagraph_capture_sizes=list(self.compilation_config.cudagraph_capture_sizes or []))

    # ---- sleep mode: weights, KV cache and runtime state in tagged npusim pools (sleep.py)

    def _maybe_get_memory_pool_context(self, tag: str):
        if not self.model_config.enable_sleep_mode:
            return contextlib.nullcontext()
        return sleep.pools(self.device).use_memory_pool(tag)

    @property
    def sleep_mode_backend(self):
        if self._sleep_mode_backend is None:
            self._sleep_mode_backend = sleep.NpuSimSleepBackend(self.device)
        return self._sleep_mode_backend

    # the GPU worker's, which the CPU worker turns into warnings
    def sleep(self, level: int = 1) -> None:
        Worker.sleep(self, level)

    def wake_up(self, tags: list[str] | None = None) -> None:
        Worker.wake_up(self, tags)

    def discard(self, tags: tuple[str, ...]) -> None:
        Worker.discard(self, tags)

    def determine_available_memory(self) -> int:
        """KV-cache bytes: `kv_cache_memory_bytes` if given (checked against the device's
        free memory), else `gpu_memory_utilization` x capacity less what is allocated."""
        if self._should_warm_up_model():
            self.model_runner.warming_up_model()
        torch.npusim.synchronize(self.device)
        free, total = torch.npusim.mem_get_info(self.device)
        explicit = self.cache_config.kv_cache_memory_bytes
        if explicit is not None:
            if explicit > free:
                raise ValueError(f"kv_cache_memory_bytes ({format_gib(explicit)} GiB) is more than {self.device} "
                                 f"has free ({format_gib(free)} of {format_gib(total)} GiB)")
            logger.info("KV cache: %s GiB on %s, as requested", format_gib(explicit), self.device)
            return explicit
        budget = int(total * self.cache_config.gpu_memory_utilization)
        used = torch.npusim.memory_reserved(self.device)
        available = min(budget - used, free)
        if available <= 0:
            raise ValueError(
                f"no memory left for the KV cache on {self.device}: gpu_memory_utilization "
                f"{self.cache_config.gpu_memory_utilization} of {format_gib(total)} GiB is {format_gib(budget)} GiB, "
                f"and {format_gib(used)} GiB are already reserved (weights, activations). Raise "
                f"gpu_memory_utilization or NPUSIM_DEVICE_MEMORY, or set kv_cache_memory_bytes")
        logger.info("KV cache: %s GiB on %s (%.2f x %s GiB capacity, %s GiB in use)", format_gib(available),
                    self.device, self.cache_config.gpu_memory_utilization, format_gib(total), format_gib(used))
        return available
