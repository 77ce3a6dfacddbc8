"""Graphs on npusim, shaped like ``torch.cuda``'s: ``NPUGraph``, ``graph(...)``,
``graph_pool_handle()``, ``is_current_stream_capturing()``.

``NPUGraph`` is ``torch.accelerator.Graph`` (npusim implements torch's device-generic
graph interface) with ``torch.cuda.CUDAGraph``'s ``capture_begin(pool, capture_error_mode)``.
Work launched on the capturing stream is recorded, not run; ``replay()`` runs it again on
the same memory, with fresh random numbers each time. See the README's "Graphs" section.
"""
from __future__ import annotations

import gc
from typing import Literal

import torch

from .. import _C
from ._device import _device_index, synchronize
from .memory import empty_cache
from .streams import Stream, stream as _stream_context

CaptureErrorMode = Literal["default", "global", "thread_local", "relaxed"]


class NPUGraph(torch.accelerator.Graph):
    """An npusim graph (``torch.cuda.CUDAGraph``'s counterpart).

    ``keep_graph``: as for ``torch.accelerator.Graph``; ``instantiate()`` is cheap on npusim.
    """

    def __new__(cls, keep_graph: bool = False) -> "NPUGraph":
        return super().__new__(cls, keep_graph)

    def __init__(self, keep_graph: bool = False) -> None:
        super().__init__(keep_graph)

    def capture_begin(self, pool: tuple[int, int] | None = None, capture_error_mode: CaptureErrorMode = "global") -> None:
        """Begin capture on the current stream (not the default stream), allocating from
        ``pool`` (another graph's ``pool()`` or ``graph_pool_handle()``; a new one if None)."""
        self.graph_pool, self.capture_error_mode = pool, capture_error_mode  # what Graph.capture_begin passes on
        super().capture_begin()


def graph_pool_handle() -> tuple[int, int]:
    """A new memory-pool id that graphs can share (``torch.cuda.graph_pool_handle``)."""
    return _C._graph_pool_handle()


def is_current_stream_capturing(device=None) -> bool:
    """Whether the current stream of ``device`` is capturing a graph."""
    return _C._graph_is_current_stream_capturing(_device_index(device, optional=True))


_OPTIMIZER_APIS = ("torch.optim.optimizer:Optimizer._accelerator_graph_capture_health_check",)


def _check_optimizer_captures() -> None:
    """torch's optimizers refuse a graph capture of step() without `capturable=True` (which
    would bake the step count into the graph: every replay would then apply the bias
    corrections of the captured step) only on CUDA and XPU: their check names those two
    device types. npusim adds the same check for its own captures."""
    from torch.optim.optimizer import Optimizer

    original = Optimizer._accelerator_graph_capture_health_check
    if getattr(original, "_npusim_patched", False):
        return
    from .. import _private_torch

    _private_torch.require_checked_version(
        _OPTIMIZER_APIS, "optimizer steps captured in npusim graphs are not checked for capturable=True")

    def health_check(self) -> None:
        original(self)
        if torch.compiler.is_compiling() or not is_current_stream_capturing():
            return
        if not all(group["capturable"] for group in self.param_groups):
            raise RuntimeError(f"Attempting NPUSIM graph capture of step() for an instance of "
                               f"{type(self).__name__} but param_groups' capturable is False.")

    health_check._npusim_patched = True
    Optimizer._accelerator_graph_capture_health_check = health_check


_side_stream: dict[int, Stream] = {}


class graph:
    """Captures the work of its block into ``npu_graph`` (``torch.cuda.graph``'s counterpart):
    synchronizes, empties the cache, and captures on ``stream`` (a side stream by default)."""

    def __init__(self, npu_graph: NPUGraph, pool: tuple[int, int] | None = None, stream: Stream | None = None,
                 capture_error_mode: CaptureErrorMode = "global") -> None:
        if stream is None:
            device = torch.npusim.current_device()
            stream = _side_stream.setdefault(device, Stream(device))
        self.npu_graph = npu_graph
        self.pool = pool
        self.capture_stream = stream
        self.capture_error_mode = capture_error_mode
        self._stream_ctx = _stream_context(stream)

    def __enter__(self) -> None:
        synchronize()
        if torch.compiler.config.force_cudagraph_gc:
            gc.collect()
        empty_cache()
        self._stream_ctx.__enter__()
        self.npu_graph.capture_begin(self.pool, capture_error_mode=self.capture_error_mode)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.npu_graph.capture_end()
            else:  # the block's own error is the one to see; the capture is abandoned
                self.npu_graph.reset()
        finally:
            self._stream_ctx.__exit__(exc_type, exc, tb)


def pool_reserved_bytes(pool: tuple[int, int], device=None) -> int:
    """Bytes a graph memory pool holds reserved on ``device``."""
    return _C._graph_pool_reserved_bytes(_device_index(device, optional=True), tuple(pool))


__all__ = ["NPUGraph", "graph", "graph_pool_handle", "is_current_stream_capturing", "pool_reserved_bytes"]
