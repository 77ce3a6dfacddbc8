"""NpuSimModelRunner: vLLM's model runner with its device side on npusim.

vLLM's CPU runner aliases every device-side buffer (`CpuGpuBuffer.gpu`) to its host copy,
replaces streams and events with placeholders and turns `torch.accelerator.synchronize`
into a no-op, all because the CPU has no device. npusim is one: the runner here keeps the
GPU runner's layout (pinned host buffers, device buffers, copies between them) and its
async-scheduling machinery, whose `torch.cuda` stream and event calls are served by npusim
streams and events (see `_CudaAsNpusim`). Linear layers whose weights are on npusim run
torch's linear (see `_torch_linear_for_npusim_weights`).
"""
from __future__ import annotations

import functools
import types

import torch
import vllm.model_executor.layers.utils as layer_utils
import vllm.v1.worker.gpu_model_runner as gpu_model_runner
from vllm.config import CUDAGraphMode
from vllm.distributed.parallel_state import get_pp_group
from vllm.v1.worker.cpu_model_runner import CPUModelRunner
from vllm.v1.worker.gpu_model_runner import GPUModelRunner

from .graphs import NpuSimGraphWrapper, npusim_graph_capture, route_graph_wrapper_to_npusim
from .internals import check_vllm


class _CudaAsNpusim:
    """The `torch.cuda` that vLLM's GPU model runner module sees: streams and events are
    npusim's. Anything not mapped is the real `torch.cuda` (e.g. its exception types)."""

    Stream = torch.npusim.Stream
    Event = torch.npusim.Event  # accepts torch.cuda.Event's `blocking`
    current_stream = staticmethod(torch.npusim.current_stream)
    default_stream = staticmethod(torch.npusim.default_stream)
    stream = staticmethod(torch.npusim.stream)
    set_stream = staticmethod(torch.npusim.set_stream)
    synchronize = staticmethod(torch.npusim.synchronize)

    def __getattr__(self, name):
        return getattr(torch.cuda, name)


class _TorchSeenByRunner(types.ModuleType):
    """`torch` as the GPU model runner module sees it: everything is torch's own except
    `torch.cuda`. Scoped to that one module, so user code in the same process keeps the
    real `torch.cuda`."""

    def __init__(self) -> None:
        super().__init__("torch")
        self.cuda = _CudaAsNpusim()

    def __getattr__(self, name):
        return getattr(torch, name)


def _route_runner_cuda_calls_to_npusim() -> None:
    if not isinstance(gpu_model_runner.torch, _TorchSeenByRunner):
        gpu_model_runner.torch = _TorchSeenByRunner()
    # graph capture: a dedicated npusim stream, and vLLM's graph wrapper on npusim graphs
    gpu_model_runner.graph_capture = npusim_graph_capture
    route_graph_wrapper_to_npusim()


def _sample_on_the_logits_device(sampler) -> None:
    """vLLM's CPU sampler draws its per-row seeds with `torch.randint` on the default device
    (the CPU) and hands them to its kernel beside the logits, which are on npusim: a device
    mismatch. Inside the sampler the default device is the logits' device, so the seeds
    (and draws from per-request npusim generators) are made there."""
    if sampler.forward != sampler.forward_cpu:
        return
    forward_cpu = sampler.forward_cpu

    def forward_on_device(logits, generators, k, p):
        with torch.device(logits.device):
            return forward_cpu(logits, generators, k, p)

    sampler.forward = forward_on_device


def _torch_linear_for_npusim_weights() -> None:
    """vLLM's CPU platform gives each linear layer a GEMM when its weights are loaded
    (`dispatch_cpu_unquantized_gemm`): a oneDNN handle, or weights packed for its own kernel,
    whose calls allocate their output on the CPU (`ops.onednn_mm` does, beside npusim
    activations: a device mismatch), and torch's linear only where oneDNN cannot build its
    primitive (e.g. bf16 on a CPU without AVX512-BF16 or AMX). vLLM 0.32 offers no
    platform hook for that choice, so the dispatch is wrapped: a 2-D weight on npusim keeps
    its tensor and gets torch's linear, which runs on the device (other layers are vLLM's)."""
    dispatch = layer_utils.dispatch_cpu_unquantized_gemm
    if getattr(dispatch, "_npusim_patched", False):
        return

    @functools.wraps(dispatch)
    def dispatch_cpu_unquantized_gemm(layer: torch.nn.Module, remove_weight: bool) -> None:
        weight = getattr(layer, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.device.type == "npusim" and weight.ndim == 2:
            layer.cpu_linear = torch.nn.functional.linear
            return
        dispatch(layer, remove_weight)

    dispatch_cpu_unquantized_gemm._npusim_patched = True
    layer_utils.dispatch_cpu_unquantized_gemm = dispatch_cpu_unquantized_gemm


class NpuSimModelRunner(CPUModelRunner):
    def __init__(self, vllm_config, device: torch.device):
        if device.type != "npusim":
            raise ValueError(f"NpuSimModelRunner runs on an npusim device, not {device}")
        check_vllm()
        _route_runner_cuda_calls_to_npusim()
        _torch_linear_for_npusim_weights()
        # the GPU runner's constructor, not the CPU one's (which aliases device buffers to host)
        GPUModelRunner.__init__(self, vllm_config, device)
        # graphs are captured unless the engine is eager (CPUModelRunner never captures)
        self.use_cuda_graph = not self.model_config.enforce_eager and \
            self.compilation_config.cudagraph_mode != CUDAGraphMode.NONE
        _sample_on_the_logits_device(self.sampler.topk_topp_sampler)

    def load_model(self, *args, **kwargs) -> None:
        super().load_model(*args, **kwargs)
        # full graphs wrap the whole model, as GPUModelRunner.load_model does (CPUModelRunner's
        # does not); they are captured where the attention backend supports them (attention.py)
        if self.compilation_config.cudagraph_mode.has_full_cudagraphs() and \
                not self.parallel_config.use_ubatching:
            self.model = NpuSimGraphWrapper(self.model, self.vllm_config, runtime_mode=CUDAGraphMode.FULL)
        # A later pipeline stage receives activations into buffers that vLLM allocates in its
        # warm-up run; eager engines with an explicit KV-cache size skip that run.
        if not get_pp_group().is_first_rank and self.intermediate_tensors is None:
            self.intermediate_tensors = self.model.make_empty_intermediate_tensors(
                batch_size=self.max_num_tokens, dtype=self.model_config.dtype, device=self.device)

    def _sync_device(self) -> None:
        torch.npusim.synchronize(self.device)

    def _to_list(self, sampled_token_ids: torch.Tensor) -> list[list[int]]:
        return GPUModelRunner._to_list(self, sampled_token_ids)
