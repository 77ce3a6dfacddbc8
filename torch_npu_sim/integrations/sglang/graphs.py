"""SGLang's decode graphs (its CUDA graph runner) on npusim graphs.

SGLang's `DecodeCudaGraphRunner` pads each decode batch to a captured batch size, fills its
static input buffers and replays that size's graph through a graph backend; an out-of-tree
platform supplies the backend (`get_full_graph_backend_cls`). SGLang's `FullCudaGraphBackend`
builds `torch.cuda.CUDAGraph()` directly, so npusim's backend keeps its bookkeeping and captures
`torch.npusim.NPUGraph`s instead, counting captures and replays for the device report.
Attention is captured by `attention.NpuSimGraphAttnBackend`.
"""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import torch
from sglang.srt.distributed import parallel_state
from sglang.srt.model_executor.cuda_graph_config import Backend
from sglang.srt.model_executor.runner.decode_cuda_graph_runner import DecodeCudaGraphRunner
from sglang.srt.model_executor.runner_backend.full_cuda_graph_backend import FullCudaGraphBackend
from sglang.srt.runtime_context import get_exec, get_flags


class GraphStats:
    """What decode graphs did in this process (the device report reads it)."""

    captured_sizes: list[int] = []
    replays_by_size: Counter = Counter()

    @classmethod
    def as_dict(cls) -> dict:
        return dict(captured_batch_sizes=sorted(cls.captured_sizes),
                    replays_by_batch_size={str(k): v for k, v in sorted(cls.replays_by_size.items())})


def decode_graphs_enabled() -> bool:
    """Whether SGLang's published configuration has decode graphs on (False before it is published)."""
    try:
        config = get_exec().graph.cuda_graph_config
    except ValueError:
        return False
    return config is not None and config.decode.backend != Backend.DISABLED


class NpuSimFullGraphBackend(FullCudaGraphBackend):
    """SGLang's full-graph backend (one graph of the whole forward per batch size) on npusim graphs."""

    def __init__(self, cuda_graph_runner, *, enable_memory_saver: bool = False,
                 reuse_output_buffer: bool = False) -> None:
        if reuse_output_buffer:
            raise NotImplementedError("npusim graphs capture decode batches only, not prefill graphs")
        super().__init__(cuda_graph_runner, enable_memory_saver=enable_memory_saver)
        if self._memory_saver_adapter is not None and self._memory_saver_adapter.enabled:
            raise NotImplementedError("npusim graphs do not support SGLang's memory saver "
                                      "(SGLANG_MEMORY_SAVER_CUDA_GRAPH)")

    def capture_one(self, shape_key, forward_fn, capture_inputs=None, post_warmup_hook=None) -> None:
        # as SGLang's: two eager runs first, so one-time setup is not captured
        for _ in range(2):
            self._device_module.synchronize()
            self._tp_group.barrier()
            forward_fn()
            if post_warmup_hook is not None:
                post_warmup_hook()
        graph = torch.npusim.NPUGraph()
        with torch.npusim.graph(graph, pool=self._pool, stream=self._capture_stream):
            output = forward_fn()
        self._graphs[shape_key] = graph
        self._outputs[shape_key] = output
        GraphStats.captured_sizes.append(shape_key.size)

    def replay(self, shape_key, static_forward_batch, **kwargs):
        output = super().replay(shape_key, static_forward_batch, **kwargs)
        GraphStats.replays_by_size[shape_key.size] += 1
        return output


@contextmanager
def _without_unavailable_nccl():
    """SGLang's `graph_capture` turns each group's PyNccl communicator on for the capture, also
    one that found no NCCL library (as on npusim), which then fails on its first all-reduce.
    Such communicators are detached while capturing, so all-reduces take the group's
    torch.distributed path: the npusim backend, whose collectives graphs record."""
    detached = []
    for ref in list(parallel_state._groups.values()):
        group = ref()
        comm = getattr(group, "pynccl_comm", None)
        if comm is not None and not comm.available:
            detached.append((group, comm))
            group.pynccl_comm = None
    try:
        yield
    finally:
        for group, comm in detached:
            group.pynccl_comm = comm


class NpuSimDecodeGraphRunner(DecodeCudaGraphRunner):
    """The platform's graph runner (`get_graph_runner_cls`): SGLang's decode graph runner, which
    resolves its graph backend through the platform (`NpuSimFullGraphBackend`)."""

    def __init__(self, model_runner, **kwargs) -> None:
        if not model_runner.spec_algorithm.is_none():
            raise NotImplementedError("npusim decode graphs do not support speculative decoding; "
                                      "run it eagerly (leave --cuda-graph-backend-decode unset)")
        if get_flags().capture.enable_torch_compile:
            # Dynamo would trace the attention's host-node call: not supported
            raise NotImplementedError("npusim decode graphs do not support --enable-torch-compile; "
                                      "leave one of the two unset")
        super().__init__(model_runner, **kwargs)

    def capture(self) -> None:
        with _without_unavailable_nccl():
            super().capture()
