"""SGLang's torch-native attention, capturable in npusim decode graphs.

SGLang's `TorchNativeAttnBackend` loops over the batch's requests on the host, slicing each
request's KV slots by its sequence length, so its decode attention cannot be recorded as fixed
kernels (and SGLang turns CUDA graphs off with it). Here, while a graph captures, the KV-cache
write is recorded as usual and each layer's attention is recorded as one host node
(`_call_with_device_access`): at every replay it runs SGLang's own decode attention again on the
graph's buffers, reading the current contents of the runner's static `req_pool_indices` and
`seq_lens` (filled before each replay, as a CUDA graph's inputs are). Padding requests have
request index 0 and sequence length 1 (`get_cuda_graph_seq_len_fill_value`), a valid read whose
output rows SGLang drops. Eagerly, and outside captures, it is SGLang's backend unchanged.
"""
from __future__ import annotations

import torch
from sglang.srt.layers.attention.torch_native_backend import TorchNativeAttnBackend
from sglang.srt.mem_cache.memory_pool import KVWriteLoc

from ... import _C

# padded requests attend over one slot: the fill value of the runner's static seq_lens
PADDED_SEQ_LEN = 1


class NpuSimGraphAttnBackend(TorchNativeAttnBackend):
    """TorchNativeAttnBackend with decode-graph support (npusim graphs only)."""

    def init_cuda_graph_state(self, max_bs: int, max_num_tokens: int) -> None:
        # the metadata is the runner's static buffers themselves: nothing to allocate
        if self.use_sliding_window_kv_pool:
            raise NotImplementedError("npusim decode graphs do not support sliding-window KV pools "
                                      "(their slot translation runs on the host at each step); "
                                      "run eagerly (leave --cuda-graph-backend-decode unset)")

    def get_cuda_graph_seq_len_fill_value(self) -> int:
        return PADDED_SEQ_LEN

    def forward_decode(self, q, k, v, layer, forward_batch, save_kv_cache=True):
        if not torch.npusim.is_current_stream_capturing():
            return super().forward_decode(q, k, v, layer, forward_batch, save_kv_cache)
        if layer.is_cross_attention or forward_batch.encoder_lens is not None:
            raise NotImplementedError("npusim decode graphs capture decoder self-attention only")
        q = q.reshape(-1, layer.tp_q_head_num * layer.qk_head_dim)
        o = q.new_empty((q.shape[0], layer.tp_q_head_num * layer.v_head_dim))
        if save_kv_cache and k is not None and v is not None:
            self.token_to_kv_pool.set_kv_buffer(layer, KVWriteLoc(forward_batch.out_cache_loc, None), k, v)
        # recorded, not run: each replay calls it again on the graph's tensors
        _C._call_with_device_access(
            self._attend, layer, q.view(-1, layer.tp_q_head_num, layer.qk_head_dim),
            o.view(-1, layer.tp_q_head_num, layer.v_head_dim), forward_batch.req_pool_indices,
            forward_batch.seq_lens)
        return o

    def _attend(self, layer, q, o, req_pool_indices, seq_lens) -> None:
        window = layer.sliding_window_size
        self._run_sdpa_forward_decode(
            q, o, self.token_to_kv_pool.get_key_buffer(layer.layer_id),
            self.token_to_kv_pool.get_value_buffer(layer.layer_id), self.req_to_token_pool.req_to_token,
            req_pool_indices, seq_lens, None, scaling=layer.scaling,
            enable_gqa=layer.tp_q_head_num != layer.tp_k_head_num, causal=False, is_cross_attn=False,
            sliding_window_size=window if window is not None and window > -1 else None)


def create_attention_backend(model_runner) -> TorchNativeAttnBackend:
    """SGLang's `torch_native` attention factory, as the npusim plugin registers it: the
    graph-capturable subclass on npusim with decode graphs on, SGLang's backend otherwise."""
    from .graphs import decode_graphs_enabled

    if model_runner.device == "npusim" and decode_graphs_enabled():
        return NpuSimGraphAttnBackend(model_runner)
    return TorchNativeAttnBackend(model_runner)
