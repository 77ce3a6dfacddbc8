"""Offline generation with SGLang on npusim, in SGLang's own environment.

SGLang lives in its own virtual environment (scripts/install_sglang.sh: its pins conflict with
vLLM's), so the tests, example and benchmark, which run in the main environment, call
`generate()`: it runs `python -m torch_npu_sim.integrations.sglang.offline` with that
environment's Python and returns the tokens, timings and each worker's device report.
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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DEFAULT_VENV = os.path.join(ROOT, ".venv-sglang")


def sglang_python() -> str | None:
    """The SGLang environment's interpreter, or None when it is not installed."""
    venv = os.environ.get("NPUSIM_SGLANG_VENV", DEFAULT_VENV)
    python = os.path.join(venv, "bin", "python")
    return python if os.path.exists(python) else None


def child_env(tp: int) -> dict[str, str]:
    env = dict(os.environ)
    # each worker gets its share of the cores (a thread per core each would spin against each other)
    env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // tp)))
    env.setdefault("SGLANG_PLATFORM", "npusim")
    return env


def generate(model: str, prompts: list, *, tp: int = 1, dtype: str = "bfloat16", max_tokens: int | list[int] = 16,
             sampling: dict | None = None, engine_args: dict | None = None, warmup: bool = False,
             then: list[dict] | None = None, stream: bool = False, env: dict | None = None,
             timeout: float = 600) -> dict:
    """One offline generation in a child process; `prompts` are strings or lists of token ids.
    `max_tokens` is one count for every prompt or a list with one per prompt (requests then finish
    at different steps, so the decode batch shrinks). `sampling` overrides the greedy sampling
    parameters; `engine_args` SGLang's engine arguments.
    `then` lists further batches ({"prompts": ..., "sampling": ...}) run one after another on the
    same engine; their outputs are in the report's "then". `stream` adds the prompts streamed
    concurrently (mean time to first token and inter-token latency) after the timed batch."""
    python = sglang_python()
    if python is None:
        raise RuntimeError("SGLang's environment is not installed: run bash scripts/install_sglang.sh")
    with tempfile.TemporaryDirectory() as tmp:
        spec = os.path.join(tmp, "spec.json")
        with open(spec, "w") as f:
            json.dump(dict(model=model, prompts=prompts, tp=tp, dtype=dtype, max_tokens=max_tokens,
                           sampling=sampling or {}, engine_args=engine_args or {}, warmup=warmup,
                           then=then or [], stream=stream), f)
        cmd = [python, "-m", "torch_npu_sim.integrations.sglang.offline", spec, tmp]
        out = os.path.join(tmp, "out.json")
        for attempt in range(PORT_RACE_ATTEMPTS):
            returncode, log = _run_child(cmd, {**child_env(tp), **(env or {})}, timeout)
            if returncode == 0 and os.path.exists(out):
                break
            if not lost_a_port_race(log) or attempt == PORT_RACE_ATTEMPTS - 1:
                raise RuntimeError(f"SGLang generation failed (exit {returncode}):\n{log[-6000:]}")
        with open(out) as f:
            report = json.load(f)
    report["log"] = log
    return report


def _run_child(cmd: list[str], env: dict, timeout: float) -> tuple[int, str]:
    # its own process group, so that a hung engine's schedulers die with it on timeout
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        raise RuntimeError(f"SGLang generation timed out after {timeout} s:\n{log[-6000:]}")
    return proc.returncode, log


# SGLang picks its rendezvous port by binding port 0 and closing it, then listens on it later;
# any process on the machine may take that port in between (seen with tests running beside it)
PORT_RACE_ATTEMPTS = 3


def lost_a_port_race(log: str) -> bool:
    return "EADDRINUSE" in log or "address already in use" in log.lower()


def engine_kwargs(spec: dict) -> dict:
    kwargs = dict(model_path=spec["model"], device="npusim", tp_size=spec["tp"], dtype=spec["dtype"],
                  max_total_tokens=4096, random_seed=0, log_level="warning")
    kwargs.update(spec["engine_args"])
    return {k: v for k, v in kwargs.items() if v is not None}


def _per_prompt(sampling: dict, max_tokens: list[int] | None) -> dict | list[dict]:
    return sampling if max_tokens is None else [dict(sampling, max_new_tokens=n) for n in max_tokens]


def _generate(llm, prompts: list, sampling: dict | list[dict]) -> list[dict]:
    by_ids = bool(prompts) and isinstance(prompts[0], list)
    return llm.generate(**({"input_ids": prompts} if by_ids else {"prompt": prompts}), sampling_params=sampling)


def _streamed(llm, prompts: list, sampling: dict | list[dict]) -> dict:
    """Every prompt streamed concurrently: mean time to first token and inter-token latency."""
    import asyncio

    async def one(prompt, params):
        start = time.perf_counter()
        key = "input_ids" if isinstance(prompt, list) else "prompt"
        stream = await llm.async_generate(**{key: prompt}, sampling_params=params, stream=True)
        arrivals, tokens = [], 0
        async for chunk in stream:
            arrivals.append(time.perf_counter())
            tokens = chunk["meta_info"]["completion_tokens"]
        ttft = arrivals[0] - start
        itl = (arrivals[-1] - arrivals[0]) / (tokens - 1) if tokens > 1 else None
        return ttft, itl, tokens

    async def all_of_them():
        params = sampling if isinstance(sampling, list) else [sampling] * len(prompts)
        return await asyncio.gather(*(one(p, s) for p, s in zip(prompts, params)))

    start = time.perf_counter()
    results = llm.loop.run_until_complete(all_of_them())
    elapsed = time.perf_counter() - start
    itls = [r[1] for r in results if r[1] is not None]
    return dict(ttft_s=sum(r[0] for r in results) / len(results), itl_s=sum(itls) / len(itls) if itls else None,
                streamed_tokens_per_s=sum(r[2] for r in results) / elapsed)


def _outputs(outputs: list[dict]) -> dict:
    return dict(tokens=[list(o["output_ids"]) for o in outputs], texts=[o["text"] for o in outputs],
                prompt_tokens=[o["meta_info"].get("prompt_tokens") for o in outputs],
                cached_tokens=[o["meta_info"].get("cached_tokens") for o in outputs])


def _run(spec_path: str, tmp: str) -> None:
    import sglang

    from .report import REPORT_METHOD, read_reports

    with open(spec_path) as f:
        spec = json.load(f)
    llm = sglang.Engine(**engine_kwargs(spec))
    per_prompt = spec["max_tokens"] if isinstance(spec["max_tokens"], list) else None
    greedy = dict(temperature=0.0, max_new_tokens=max(per_prompt) if per_prompt else spec["max_tokens"],
                  ignore_eos=True)
    if spec["warmup"]:
        _generate(llm, spec["prompts"][:1], dict(greedy, max_new_tokens=2))
    start = time.perf_counter()
    outputs = _generate(llm, spec["prompts"], _per_prompt({**greedy, **spec["sampling"]}, per_prompt))
    elapsed = time.perf_counter() - start
    report = _outputs(outputs)
    tokens = report["tokens"]
    metas = [o["meta_info"] for o in outputs]
    e2e = [m["e2e_latency"] for m in metas if m.get("e2e_latency") is not None]
    report.update(seconds=elapsed, output_tokens=sum(map(len, tokens)),
                  output_tokens_per_s=sum(map(len, tokens)) / elapsed,
                  mean_e2e_latency_s=sum(e2e) / len(e2e) if e2e else None,
                  then=[_outputs(_generate(llm, batch["prompts"], {**greedy, **batch.get("sampling", {})}))
                        for batch in spec["then"]])
    if spec.get("stream"):
        report.update(_streamed(llm, spec["prompts"], _per_prompt({**greedy, **spec["sampling"]}, per_prompt)))
    reports_dir = os.path.join(tmp, "workers")
    os.makedirs(reports_dir)
    llm.collective_rpc(REPORT_METHOD, directory=reports_dir)
    report["workers"] = read_reports(reports_dir)
    llm.shutdown()
    # a clean exit leaves no scheduler or detokenizer process behind
    import psutil

    report["children_after_shutdown"] = [p.name() for p in psutil.Process().children(recursive=True)
                                         if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    with open(os.path.join(tmp, "out.json"), "w") as f:
        json.dump(report, f, default=str)


def main() -> None:
    parser = argparse.ArgumentParser(description="one offline SGLang generation on npusim (run by generate())")
    parser.add_argument("spec")
    parser.add_argument("tmp")
    args = parser.parse_args()
    _run(args.spec, args.tmp)


if __name__ == "__main__":
    sys.exit(main())
