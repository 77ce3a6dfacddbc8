"""vLLM's sleep mode on npusim: the engine's weights, KV cache and runtime state live in
tagged npusim pools that give their device memory back while asleep. Level 1 keeps the
weights in host memory, level 2 keeps nothing and vLLM reloads them; either way the engine
serves the same greedy tokens after waking up."""
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("vllm", reason="the vllm extra is not installed (scripts/install_vllm.sh)")

from torch_npu_sim.integrations.vllm.offline import child_env  # noqa: E402
from torch_npu_sim.integrations.vllm.tiny_model import make_tiny_llama  # noqa: E402

SCRIPT = """
import json, sys, torch
from vllm import LLM, SamplingParams

llm = LLM(model=sys.argv[1], dtype="bfloat16", max_model_len=512, kv_cache_memory_bytes=64 << 20,
          enforce_eager=True, enable_sleep_mode=True, enable_prefix_caching=True, seed=0)
params = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)
prompts = ["Hello, how are you", "The quick brown fox jumps"]
tokens = lambda: [list(o.outputs[0].token_ids) for o in llm.generate(prompts, params, use_tqdm=False)]
free = lambda: torch.npusim.mem_get_info(0)[0]
report = {"before": tokens()}
for level in (1, 2):
    awake = free()
    llm.sleep(level=level)
    report[f"freed_{level}"] = free() - awake
    llm.wake_up()
    if level == 2:
        llm.collective_rpc("reload_weights")  # level 2 kept no weights, as on CUDA
    llm.reset_prefix_cache()
    report[f"after_{level}"] = tokens()
report["weight_bytes"] = sum(p.numel() * p.element_size() for p in
                             llm.llm_engine.model_executor.driver_worker.worker.model_runner.model.parameters())
print("REPORT", json.dumps(report))
"""


def test_sleep_frees_device_memory_and_wake_up_serves_the_same_tokens(tmp_path):
    model = make_tiny_llama(str(tmp_path / "tiny-llama"))
    env = child_env("npusim", 1, in_process=True)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), model], env=env, capture_output=True,
                         text=True, timeout=600, start_new_session=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("REPORT ")]
    assert out.returncode == 0 and lines, (out.stdout[-3000:], out.stderr[-6000:])
    import json

    report = json.loads(lines[-1][len("REPORT "):])
    assert report["after_1"] == report["before"]
    assert report["after_2"] == report["before"]
    kv_cache = 64 << 20
    for level in (1, 2):  # the KV cache and the weights give their device memory back
        assert report[f"freed_{level}"] >= kv_cache + report["weight_bytes"], report
