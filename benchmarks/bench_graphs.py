"""Graph replay against eager: one decode step of a tiny Llama-style model (batch 1, one
new token, a static KV cache written at a device-side position), as a serving engine runs
it. Cases, interleaved in the same run (medians of per-round ratios): CPU eager (the
baseline), npusim eager, npusim graph replay. The replayed step must give the same logits
as the eager step (checked before timing).

    python benchmarks/bench_graphs.py [--layers 4] [--hidden 256] [--rounds 9]
"""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import interleaved_samples, medians, paired_ratio, print_table


class DecodeLayer(nn.Module):
    def __init__(self, hidden, heads, cache_len):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.norm1, self.norm2 = nn.RMSNorm(hidden), nn.RMSNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=False)
        self.o = nn.Linear(hidden, hidden, bias=False)
        self.gate_up = nn.Linear(hidden, 2 * 4 * hidden, bias=False)
        self.down = nn.Linear(4 * hidden, hidden, bias=False)
        self.register_buffer("k_cache", torch.zeros(1, heads, cache_len, self.head_dim))
        self.register_buffer("v_cache", torch.zeros(1, heads, cache_len, self.head_dim))

    def forward(self, x, pos, mask):
        q, k, v = self.qkv(self.norm1(x)).view(1, 1, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        self.k_cache.index_copy_(2, pos, k)
        self.v_cache.index_copy_(2, pos, v)
        a = F.scaled_dot_product_attention(q, self.k_cache, self.v_cache, attn_mask=mask)
        x = x + self.o(a.transpose(1, 2).reshape(1, 1, -1))
        gate, up = self.gate_up(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class TinyDecoder(nn.Module):
    def __init__(self, vocab=1024, hidden=256, heads=8, layers=4, cache_len=128):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(DecodeLayer(hidden, heads, cache_len) for _ in range(layers))
        self.norm = nn.RMSNorm(hidden)
        self.head = nn.Linear(hidden, vocab, bias=False)
        self.register_buffer("positions", torch.arange(cache_len))

    def forward(self, token, pos):
        mask = (self.positions <= pos).view(1, 1, 1, -1)  # device-side: no host value needed
        x = self.embed(token).view(1, 1, -1)
        for layer in self.layers:
            x = layer(x, pos, mask)
        return self.head(self.norm(x))



def main():
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--calls", type=int, default=30)
    args = p.parse_args()
    torch.manual_seed(0)
    cpu_model = TinyDecoder(hidden=args.hidden, layers=args.layers).eval()
    npu_model = TinyDecoder(hidden=args.hidden, layers=args.layers).eval()
    npu_model.load_state_dict(cpu_model.state_dict())
    npu_model.to("npusim")
    cpu_token, cpu_pos = torch.tensor([3]), torch.tensor([5])
    token, pos = cpu_token.to("npusim"), cpu_pos.to("npusim")

    with torch.inference_mode():
        for _ in range(3):  # warm-up, as engines do before capture
            npu_model(token, pos)
        graph = torch.npusim.NPUGraph()
        with torch.npusim.graph(graph):
            static_logits = npu_model(token, pos)
        graph.replay()
        eager_logits = npu_model(token, pos)
        assert torch.equal(static_logits.cpu(), eager_logits.cpu()), "replay differs from eager"
        torch.testing.assert_close(eager_logits.cpu(), cpu_model(cpu_token, cpu_pos), rtol=1e-4, atol=1e-4)

        def replay():
            graph.replay()
            torch.npusim.synchronize()

        samples = interleaved_samples({
            "cpu eager": lambda: cpu_model(cpu_token, cpu_pos),
            "npusim eager": lambda: npu_model(token, pos),
            "npusim replay": replay,
        }, calls=args.calls, rounds=args.rounds)
    t = medians(samples)
    ms = lambda name: f"{t[name] * 1e3:.3f} ms"
    rows = [
        ["cpu eager (baseline)", ms("cpu eager"), "1.00x"],
        ["npusim eager", ms("npusim eager"), f"{paired_ratio(samples, 'npusim eager', 'cpu eager'):.2f}x"],
        ["npusim graph replay", ms("npusim replay"), f"{paired_ratio(samples, 'npusim replay', 'cpu eager'):.2f}x"],
    ]
    print_table(f"decode step, tiny Llama-style model ({args.layers} layers, hidden {args.hidden}, batch 1)",
                rows, ["case", "median per step", "time vs cpu eager"])
    print(f"replay speed-up over npusim eager: {1 / paired_ratio(samples, 'npusim replay', 'npusim eager'):.2f}x")


if __name__ == "__main__":
    main()
