"""npusim's graph-capturable torch_native attention (integrations/sglang/attention.py), in SGLang's
environment: decode attention captured once at a padded batch size, then replayed with other
requests, sequence lengths, KV slots and queries, equals SGLang's eager backend on the same inputs."""
from types import SimpleNamespace

import pytest

pytest.importorskip("sglang", reason="runs in SGLang's environment (tests/integrations/test_sglang.py starts it)")

import torch  # noqa: E402
from sglang.srt.layers.attention.torch_native_backend import TorchNativeAttnBackend  # noqa: E402
from sglang.srt.layers.radix_attention import RadixAttention  # noqa: E402
from sglang.srt.mem_cache.memory_pool import MHATokenToKVPool, ReqToTokenPool  # noqa: E402

from torch_npu_sim.integrations.sglang.attention import NpuSimGraphAttnBackend  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM, LAYERS = 4, 2, 8, 2
SLOTS, REQUESTS, CONTEXT = 256, 8, 48
CAPTURED_BS = 4


@pytest.fixture
def runner():
    torch.manual_seed(0)
    kv = MHATokenToKVPool(SLOTS, 1, torch.float32, KV_HEADS, HEAD_DIM, LAYERS, "npusim", False,
                          enable_alt_stream=False)
    for buffer in kv.k_buffer + kv.v_buffer:
        buffer.copy_(torch.randn(buffer.shape))
    req_to_token = ReqToTokenPool(REQUESTS, CONTEXT, "npusim", False)
    # each request's context in slots scattered over the pool (slot 0 is SGLang's padding slot)
    req_to_token.req_to_token.copy_(torch.stack([torch.randperm(SLOTS - 1)[:CONTEXT] + 1
                                                 for _ in range(REQUESTS + 1)]).to(torch.int32))
    return SimpleNamespace(device="npusim", req_to_token_pool=req_to_token, token_to_kv_pool=kv)


def _step(bs: int, generator: torch.Generator) -> dict:
    """A decode step's inputs for `bs` live requests (distinct requests and write slots)."""
    reqs = torch.randperm(REQUESTS, generator=generator)[:bs] + 1
    return dict(req_pool_indices=reqs, seq_lens=torch.randint(1, CONTEXT, (bs,), generator=generator),
                out_cache_loc=torch.randperm(SLOTS - 1, generator=generator)[:bs] + 1,
                q=torch.randn(bs, HEADS * HEAD_DIM, generator=generator),
                k=torch.randn(bs, KV_HEADS, HEAD_DIM, generator=generator),
                v=torch.randn(bs, KV_HEADS, HEAD_DIM, generator=generator))


def _forward(backend, layers, inputs: dict) -> torch.Tensor:
    batch = SimpleNamespace(req_pool_indices=inputs["req_pool_indices"], seq_lens=inputs["seq_lens"],
                            out_cache_loc=inputs["out_cache_loc"], encoder_lens=None)
    q = inputs["q"]
    for layer in layers:  # the next layer's query depends on this one's output, as in a model
        q = backend.forward_decode(q, inputs["k"], inputs["v"], layer, batch) + q
    return q


def test_replayed_decode_attention_equals_eager_for_new_requests_and_lengths(runner):
    layers = [RadixAttention(HEADS, HEAD_DIM, HEAD_DIM ** -0.5, KV_HEADS, i) for i in range(LAYERS)]
    backend = NpuSimGraphAttnBackend(runner)
    backend.init_cuda_graph_state(CAPTURED_BS, CAPTURED_BS)
    generator = torch.Generator().manual_seed(1)
    static = {name: t.to("npusim") for name, t in _step(CAPTURED_BS, generator).items()}
    graph = torch.npusim.NPUGraph()
    with torch.npusim.graph(graph):
        static_out = _forward(backend, layers, static)

    eager = TorchNativeAttnBackend(runner)
    for bs in (4, 3, 1, 2):
        step = _step(bs, generator)
        # the runner's padding: request 0, the fill sequence length, slot 0
        padding = dict(req_pool_indices=0, seq_lens=backend.get_cuda_graph_seq_len_fill_value(), out_cache_loc=0)
        for name, value in step.items():
            static[name][:bs].copy_(value)
            if name in padding:
                static[name][bs:].fill_(padding[name])
        graph.replay()
        replayed = static_out[:bs].cpu()
        expected = _forward(eager, layers, {name: t.to("npusim") for name, t in step.items()}).cpu()
        assert torch.equal(replayed, expected), bs


def test_eager_decode_is_sglangs_and_cross_attention_is_refused_under_capture(runner):
    layer = RadixAttention(HEADS, HEAD_DIM, HEAD_DIM ** -0.5, KV_HEADS, 0)
    inputs = {name: t.to("npusim") for name, t in _step(2, torch.Generator().manual_seed(2)).items()}
    ours = _forward(NpuSimGraphAttnBackend(runner), [layer], inputs)
    assert torch.equal(ours.cpu(), _forward(TorchNativeAttnBackend(runner), [layer], inputs).cpu())
    batch = SimpleNamespace(req_pool_indices=inputs["req_pool_indices"], seq_lens=inputs["seq_lens"],
                            out_cache_loc=inputs["out_cache_loc"], encoder_lens=inputs["seq_lens"])
    with pytest.raises(NotImplementedError, match="decoder self-attention only"):
        with torch.npusim.graph(torch.npusim.NPUGraph()):
            NpuSimGraphAttnBackend(runner).forward_decode(inputs["q"], None, None, layer, batch)
