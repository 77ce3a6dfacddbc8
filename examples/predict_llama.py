"""Predicts torchtitan's Llama 3.1 8B training on chips that are not here, in cost-only mode.

Runs torchtitan's own `llama3_8b` configuration (FSDP2, bf16 mixed precision, selective
activation checkpointing) on N simulated chips, one process per chip, without computing
anything (torch_npu_sim.simulation.cost_only): every kernel, copy and collective is charged on
the chip's simulated clocks with calibrated per-op-class efficiency. Prints the predicted step
time, tokens/s per chip, MFU and peak memory, and the error against torchtitan's published
figures where they exist (torchtitan docs/performance.md).

    python examples/predict_llama.py                       # 8B, FSDP and FSDP + compile, 8 x h100-sxm5-96gb; 8 x a100-sxm4-80gb
    python examples/predict_llama.py --chips h100-sxm5-80gb --configs fsdp --steps 2
    python examples/predict_llama.py --model-config llama3_debugmodel --ranks 2 --seq 512   # a quick check

Attention: torchtitan 0.3.0 builds Llama 3 with FlexAttention, which npusim's CPU code
generation unfuses; the prediction runs it as causal SDPA (one fused attention kernel, as the
published runs used; see examples/torchtitan/train.py).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.join(HERE, "torchtitan", "train.py")
PREPARE = os.path.join(HERE, "torchtitan", "prepare_assets.py")

# torchtitan docs/performance.md: Llama 3.1 8B, 8 H100s (96 GB HBM2e, 2.4 TB/s, 500 W), FSDP,
# local batch 2 (global 16), seq 8192, selective activation checkpointing, bf16 mixed precision
PUBLISHED = {
    ("h100-sxm5-96gb", "fsdp"): {"tokens_per_s": 5762, "memory_gib": 82.4, "ranks": 8, "local_batch": 2},
    ("h100-sxm5-96gb", "compile"): {"tokens_per_s": 6667, "memory_gib": 77.0, "ranks": 8, "local_batch": 2},
    # Llama 3 8B on 64 A100 80GB, local batch 1, selective op checkpointing: 2,973 tokens/s, 58.2% MFU
    ("a100-sxm4-80gb", "fsdp"): {"tokens_per_s": 2973, "mfu": 0.582, "ranks": 64, "local_batch": 1},
}
DEFAULT_RUNS = [("h100-sxm5-96gb", "fsdp"), ("h100-sxm5-96gb", "compile"), ("a100-sxm4-80gb", "fsdp")]


def run_one(chip: str, config: str, args, work: str) -> dict:
    """torchtitan under torchrun in cost-only mode; the per-rank reports, merged."""
    published = PUBLISHED.get((chip, config), {})
    local_batch = args.local_batch or published.get("local_batch", 2)
    out = os.path.join(work, f"{chip}-{config}")
    for old in glob.glob(out + ".rank*.json"):
        os.remove(old)
    env = {**os.environ, "NPUSIM_COST_ONLY": "1", "NPUSIM_CHIP": chip, "NPUSIM_EFFICIENCY": args.efficiency,
           "TITAN_SIM_REPORT": out, "TITAN_ATTENTION": "causal_sdpa", "HF_DATASETS_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1", "TORCHINDUCTOR_CACHE_DIR": os.path.join(work, "inductor-cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(args.ranks),
           "--master-port", str(args.port), TRAIN, "--module", "llama3", "--config", args.model_config,
           "--parallelism.spmd_backend", "partial_dtensor",
           "--hf_assets_path", os.path.join(work, "assets", "tokenizer"),
           "--dataloader.dataset", "c4_test", "--dataloader.dataset_path", os.path.join(work, "assets", "dataset"),
           "--training.seq_len", str(args.seq), "--training.local_batch_size", str(local_batch),
           "--training.steps", str(args.steps), "--parallelism.data_parallel_shard_degree", str(args.ranks),
           "--metrics.log_freq", "1", "--metrics.no-enable_tensorboard", "--profiler.no-enable_profiling",
           "--dump_folder", out + "-dump"]
    if config == "compile":
        cmd.append("--compile.enable")
    started = time.monotonic()
    with open(out + ".log", "w") as log:
        rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=args.timeout).returncode
    wall = time.monotonic() - started
    if rc != 0:
        raise RuntimeError(f"torchtitan failed ({chip}, {config}, rc {rc}); see {out}.log")
    reports = [json.load(open(p)) for p in sorted(glob.glob(out + ".rank*.json"))]
    if len(reports) != args.ranks:
        raise RuntimeError(f"expected {args.ranks} rank reports, found {len(reports)} ({out}.rank*.json)")
    return summarize(chip, config, reports, published, wall)


def summarize(chip: str, config: str, reports: list[dict], published: dict, wall: float) -> dict:
    from torch_npu_sim.simulation import chips

    # steady state: the steps after the first (which also warms torchtitan's caches up)
    steady = [r["steps"][1:] or r["steps"] for r in reports]
    step_s = max(statistics.median(s["sim_ns"] for s in steps) for steps in steady) / 1e9  # the slowest rank
    memory_gib = max(s["max_reserved_gib"] for steps in steady for s in steps)
    tokens = reports[0]["local_batch"] * reports[0]["seq_len"]
    tokens_per_s = tokens / step_s
    peak = chips.resolve(chip).peak_flops_bf16
    mfu = reports[0]["flops_per_token"] * tokens_per_s / peak
    row = {"chip": chip, "config": config, "ranks": reports[0]["world"], "local_batch": reports[0]["local_batch"],
           "seq_len": reports[0]["seq_len"], "step_s": step_s, "tokens_per_s": tokens_per_s, "mfu": mfu,
           "memory_gib": memory_gib, "host_wall_s": wall, "published": published, "breakdown": reports[0]["breakdown"]}
    for key in ("tokens_per_s", "memory_gib", "mfu"):
        if key in published:
            row[f"{key}_error"] = (row[key] - published[key]) / published[key]
    return row


def print_table(rows: list[dict]) -> None:
    def err(row, key):
        return f"{100 * row[key + '_error']:+.1f}%" if key + "_error" in row else "-"

    print(f"{'chip':<16} {'config':<8} {'ranks':>5} {'step s':>7} {'tok/s/chip':>10} {'published':>9} {'error':>7} "
          f"{'MFU':>6} {'peak GiB':>8} {'published':>9} {'error':>7} {'host s':>6}")
    for r in rows:
        p = r["published"]
        print(f"{r['chip']:<16} {r['config']:<8} {r['ranks']:>5} {r['step_s']:>7.3f} {r['tokens_per_s']:>10.0f} "
              f"{p.get('tokens_per_s', '-'):>9} {err(r, 'tokens_per_s'):>7} {100 * r['mfu']:>5.1f}% "
              f"{r['memory_gib']:>8.1f} {p.get('memory_gib', '-'):>9} {err(r, 'memory_gib'):>7} {r['host_wall_s']:>6.0f}")
        if p.get("ranks") and p["ranks"] != r["ranks"]:
            print(f"{'':<16} published on {p['ranks']} chips (MFU {100 * p.get('mfu', 0):.1f}%), predicted on "
                  f"{r['ranks']}: indicative only")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", nargs="+", help="presets (default: the published configurations)")
    parser.add_argument("--configs", nargs="+", choices=["fsdp", "compile"], help="default: fsdp and compile on H100")
    parser.add_argument("--model-config", default="llama3_8b", help="torchtitan config (llama3_8b, llama3_debugmodel, ...)")
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--seq", type=int, default=8192)
    parser.add_argument("--local-batch", type=int, help="default: the published run's (2; 1 for the A100 run)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--efficiency", default="calibrated", choices=["calibrated", "roofline"])
    parser.add_argument("--work", default="/tmp/npusim_predict")
    parser.add_argument("--port", type=int, default=29621)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()

    runs = DEFAULT_RUNS if not args.chips and not args.configs else [
        (chip, config) for chip in (args.chips or ["h100-sxm5-96gb"]) for config in (args.configs or ["fsdp"])]
    os.makedirs(args.work, exist_ok=True)
    subprocess.run([sys.executable, PREPARE, os.path.join(args.work, "assets"), "--documents", "2000"], check=True,
                   stdout=subprocess.DEVNULL)
    rows = []
    for chip, config in runs:
        print(f"predicting {args.model_config} on {args.ranks} x {chip} ({config}) ...", flush=True)
        rows.append(run_one(chip, config, args, args.work))
    print()
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
