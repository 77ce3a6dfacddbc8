"""npusim's attention backend: vLLM's CPU attention, capturable in full decode graphs.

vLLM's CPU attention builds a work schedule on the host for each step's sequence lengths
(`get_scheduler_metadata`), and its kernel reads that schedule, whose size and inner
pointers change from step to step; so vLLM's CPU backend declares no full-graph support. Here,
while a graph captures, each attention layer is recorded as one host node
(`_call_with_device_access`): at every replay the first layer of the batch rebuilds the
schedule from the current contents of the metadata's `seq_lens` and `query_start_loc` (views of
the runner's persistent buffers, updated before each replay, as a CUDA graph's inputs are), and
every layer then runs vLLM's attention with it. Eagerly, and outside captures, it is vLLM's
CPU backend unchanged.

Full graphs are declared for uniform single-token decode batches only (FULL_DECODE_ONLY, and
the decode graphs of FULL_AND_PIECEWISE): vLLM pads such a batch to the captured size with
requests of no tokens and sequence length 0, which the schedule skips.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from vllm import _custom_ops as ops
from vllm import envs
from vllm.v1.attention.backend import AttentionCGSupport, AttentionType
from vllm.v1.attention.backends.cpu_attn import (
    CPUAttentionBackend,
    CPUAttentionBackendImpl,
    CPUAttentionMetadata,
    CPUAttentionMetadataBuilder,
)
from vllm.v1.kv_cache_interface import CrossAttentionSpec, EncoderOnlyAttentionSpec

from ... import _C


@dataclass
class NpuSimAttentionMetadata(CPUAttentionMetadata):
    # builds the schedule again from the current seq_lens and query_start_loc (for replays)
    reschedule: Callable[[CPUAttentionMetadata], torch.Tensor] | None = None


class NpuSimAttentionMetadataBuilder(CPUAttentionMetadataBuilder):
    @classmethod
    def get_cudagraph_support(cls, vllm_config, kv_cache_spec) -> AttentionCGSupport:
        # encoder caches are built on the host at each step: decoder self-attention only
        if isinstance(kv_cache_spec, (CrossAttentionSpec, EncoderOnlyAttentionSpec)):
            return AttentionCGSupport.NEVER
        return AttentionCGSupport.UNIFORM_SINGLE_TOKEN_DECODE

    def build(self, common_prefix_len, common_attn_metadata, fast_build: bool = False) -> NpuSimAttentionMetadata:
        metadata = super().build(common_prefix_len, common_attn_metadata, fast_build)
        return NpuSimAttentionMetadata(**{f.name: getattr(metadata, f.name)
                                          for f in dataclasses.fields(CPUAttentionMetadata)},
                                       reschedule=self._schedule)

    def _schedule(self, metadata: CPUAttentionMetadata) -> torch.Tensor:
        # the same call as CPUAttentionMetadataBuilder.build's, for the batch's captured size
        return ops.cpu_attn_get_scheduler_metadata(
            num_reqs=metadata.seq_lens.shape[0], num_heads=self.num_heads, num_kv_heads=self.num_kv_heads,
            head_dim=self.head_dim, seq_lens=metadata.seq_lens, dtype=self.dtype,
            query_start_loc=metadata.query_start_loc, causal=metadata.causal,
            sliding_window_size=self.window_size, isa=self.isa, enable_kv_split=envs.VLLM_CPU_ATTN_SPLIT_KV,
            dynamic_causal=metadata.dynamic_causal, kv_cache_dtype=self.kv_cache_dtype)


class _ReplaySchedule:
    """The captured batch's metadata with the schedule of the replay under way. Layers of a
    KV cache group share one metadata object, so one schedule: the first layer recorded with
    it rebuilds the schedule at each replay, the others use it."""

    def __init__(self, metadata: NpuSimAttentionMetadata, first_layer) -> None:
        self.captured = metadata
        self.first_layer = first_layer
        self.current = metadata

    def refresh(self) -> None:
        self.current = dataclasses.replace(self.captured,
                                           scheduler_metadata=self.captured.reschedule(self.captured))


class NpuSimAttentionBackendImpl(CPUAttentionBackendImpl):
    def forward(self, layer, query, key, value, kv_cache, attn_metadata, output,
                output_scale=None, output_block_scale=None) -> torch.Tensor:
        if (attn_metadata is None or self.attn_type != AttentionType.DECODER
                or not torch.npusim.is_current_stream_capturing()):
            return super().forward(layer, query, key, value, kv_cache, attn_metadata, output,
                                   output_scale, output_block_scale)
        if not isinstance(attn_metadata, NpuSimAttentionMetadata) or output_scale is not None \
                or output_block_scale is not None:
            raise NotImplementedError("npusim graphs capture attention with npusim's metadata builder and "
                                      "without fused output quantization only")
        schedule = attn_metadata.__dict__.get("_npusim_replay_schedule")
        if schedule is None:
            schedule = attn_metadata._npusim_replay_schedule = _ReplaySchedule(attn_metadata, layer)
        # recorded, not run: each replay calls it again on the graph's tensors
        _C._call_with_device_access(self._replay, layer, query, key, value, kv_cache, schedule, output)
        return output

    def _replay(self, layer, query, key, value, kv_cache, schedule: _ReplaySchedule, output) -> None:
        if layer is schedule.first_layer:
            schedule.refresh()
        CPUAttentionBackendImpl.forward(self, layer, query, key, value, kv_cache, schedule.current, output)


class NpuSimAttentionBackend(CPUAttentionBackend):
    @staticmethod
    def get_impl_cls() -> type[NpuSimAttentionBackendImpl]:
        return NpuSimAttentionBackendImpl

    @staticmethod
    def get_builder_cls() -> type[NpuSimAttentionMetadataBuilder]:
        return NpuSimAttentionMetadataBuilder
