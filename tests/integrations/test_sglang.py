"""SGLang (0.5.21, the real engine) serving on npusim through this package's platform plugin.

SGLang lives in its own environment (scripts/install_sglang.sh); every engine runs there in a
child process. Tokens are checked against Hugging Face transformers' `generate()` on the CPU
and against vLLM on npusim (float32), for the same token ids:
- float32, TP 1 and 2: equal tokens.
- bfloat16: a near-tie between two bf16 logits breaks either way depending on how the batch was
  formed (a batched decode, a prefill chunk) and, at TP 2, on SGLang rounding each rank's partial
  product to bf16 before the all-reduce, as it does on GPUs. So each token SGLang chose must be
  the float32 reference's argmax, to within BF16_LOGIT_TOLERANCE, given the same context
  (teacher forcing).
Every engine runs chunked prefill (one prompt is longer than a chunk) and the radix cache (a
later prompt shares a prefix with an earlier one). The float32 engines run with decode graphs (opt-in;
bfloat16 engines decode eagerly, the default): their requests finish at different steps, so several
captured batch sizes replay (each worker reports its captures and replays), and a later batch too
large for any captured size decodes the same prompts eagerly in the same engine, for comparison.
"""
import functools
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
import torch

from torch_npu_sim.integrations.sglang.offline import (PORT_RACE_ATTEMPTS, ROOT, generate, lost_a_port_race,
                                                       sglang_python)
from torch_npu_sim.integrations.vllm.tiny_model import make_tiny_llama

if sglang_python() is None:
    if os.environ.get("NPUSIM_REQUIRE_SGLANG") == "1":
        raise RuntimeError("NPUSIM_REQUIRE_SGLANG=1 but SGLang's environment is missing (scripts/install_sglang.sh)")
    pytest.skip("SGLang's environment is not installed (bash scripts/install_sglang.sh)", allow_module_level=True)

pytestmark = pytest.mark.timeout(900)

MAX_TOKENS = 16
CHUNK = 48  # chunked_prefill_size: LONG is longer
# the largest logit gap (reference argmax minus SGLang's choice) a bf16 token may have; measured
# gaps are 0 or below 0.01, a token sampled from the wrong context is typically 0.1-4 below
BF16_LOGIT_TOLERANCE = 0.05
SHARED_PREFIX = ("Serving engines schedule requests, keep a paged cache of keys and values, and stream "
                 "tokens back. The simulated NPU runs PyTorch programs on the host.")
TEXTS = ["Hello, how are you", "The quick brown fox",
         " ".join(["One, two, three, four, five, six, seven, eight, nine, ten."] * 6),
         SHARED_PREFIX + " Red, green, blue"]
LATER = SHARED_PREFIX + " A journey of a thousand miles"  # shares the prefix: served from the radix cache
SAMPLED = dict(temperature=0.8, top_p=0.9, top_k=50, max_new_tokens=12)

# (tp, dtype, page_size): page sizes 1 and 4 are both covered at each TP
CONFIGS = [(1, "float32", 1), (1, "bfloat16", 4), (2, "float32", 4), (2, "bfloat16", 1)]
GRAPHS_DTYPE = "float32"  # engines of this dtype decode with graphs
# decode graphs: the batch sizes captured, and each prompt's token count (the batch shrinks
# 4, 3, 2, 1 as requests finish: replays at padded sizes 4, 2 and 1)
GRAPH_BATCH_SIZES = [1, 2, 4]
GRAPH_MAX_TOKENS = [MAX_TOKENS, 5, 11, 8]


def max_tokens(dtype: str) -> list[int]:
    return GRAPH_MAX_TOKENS if dtype == GRAPHS_DTYPE else [MAX_TOKENS] * len(TEXTS)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_llama(str(tmp_path_factory.mktemp("sglang") / "tiny-llama"))


@pytest.fixture(scope="module")
def prompts(model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    ids = [tok(t)["input_ids"] for t in TEXTS]
    later = tok(LATER)["input_ids"]
    assert len(ids[2]) > CHUNK and ids[3][:20] == later[:20]
    return ids, later


@functools.lru_cache(maxsize=None)
def _hf_model(path: str, dtype: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()


def hf_greedy(path: str, dtype: str, prompts: list[list[int]], n: int = MAX_TOKENS) -> list[list[int]]:
    hf = _hf_model(path, dtype)
    with torch.no_grad():
        return [hf.generate(torch.tensor([p]), max_new_tokens=n, min_new_tokens=n, do_sample=False)[0, len(p):].tolist()
                for p in prompts]


def logit_gaps(path: str, prompt: list[int], generated: list[int]) -> list[float]:
    """For each generated token: the reference's (float32) best logit minus that token's, given the
    prompt and the tokens generated before it."""
    hf = _hf_model(path, "float32")
    with torch.no_grad():
        logits = hf(torch.tensor([prompt + generated])).logits[0, len(prompt) - 1:-1]
    chosen = logits.gather(1, torch.tensor(generated)[:, None])[:, 0]
    return (logits.max(dim=-1).values - chosen).tolist()


@functools.lru_cache(maxsize=None)
def _run(model: str, tp: int, dtype: str, page_size: int, prompts_json: str) -> dict:
    ids, later = json.loads(prompts_json)
    then = [dict(prompts=[later])]
    engine_args = dict(page_size=page_size, chunked_prefill_size=CHUNK)
    if dtype == GRAPHS_DTYPE:
        engine_args.update(cuda_graph_backend_decode="full", cuda_graph_bs_decode=GRAPH_BATCH_SIZES)
        # more requests than the largest captured batch, all MAX_TOKENS long: decoded eagerly
        then.append(dict(prompts=ids + [later]))
    return generate(model, ids, tp=tp, dtype=dtype, max_tokens=max_tokens(dtype), then=then, engine_args=engine_args)


@pytest.fixture(scope="module", params=CONFIGS, ids=[f"tp{t}-{d}-page{p}" for t, d, p in CONFIGS])
def run(request, model, prompts):
    tp, dtype, page_size = request.param
    return dict(tp=tp, dtype=dtype, page_size=page_size,
                report=_run(model, tp, dtype, page_size, json.dumps(prompts)))


def test_greedy_tokens_match_transformers(run, model, prompts):
    ids, later = prompts
    report = run["report"]
    got = report["tokens"] + report["then"][0]["tokens"]
    all_prompts = ids + [later]
    counts = max_tokens(run["dtype"]) + [MAX_TOKENS]
    assert [len(t) for t in got] == counts
    if run["dtype"] == "bfloat16":
        for prompt, tokens in zip(all_prompts, got):
            gaps = logit_gaps(model, prompt, tokens)
            assert max(gaps) <= BF16_LOGIT_TOLERANCE, (tokens, gaps)
    else:
        assert got == [t[:n] for t, n in zip(hf_greedy(model, run["dtype"], all_prompts), counts)]


def test_chunked_prefill_and_radix_cache_were_used(run, prompts):
    ids, later = prompts
    report = run["report"]
    assert report["prompt_tokens"][2] == len(ids[2]) > CHUNK
    cached = report["then"][0]["cached_tokens"][0]
    # the shared prefix came from the cache, in whole pages
    assert cached >= 20 and cached % run["page_size"] == 0, cached


def test_weights_and_kv_cache_live_on_npusim_in_every_worker(run):
    workers = run["report"]["workers"]
    assert [w["tp_rank"] for w in workers] == list(range(run["tp"]))
    for rank, w in enumerate(workers):
        assert w["device"] == f"npusim:{rank}"
        assert w["parameter_devices"] == [f"npusim:{rank}"] and w["kv_cache_devices"] == [f"npusim:{rank}"]
        assert w["kv_cache_bytes"] > 0 and w["npusim_memory_allocated"] >= w["kv_cache_bytes"]
        assert w["dist_backend"] == "npusim"
        assert w["allocator"] == ("TokenToKVPoolAllocator" if run["page_size"] == 1
                                  else "NpuSimPagedTokenToKVPoolAllocator")
        if run["dtype"] != GRAPHS_DTYPE:
            # decode graphs are opt-in: unasked, SGLang decodes eagerly, as on CUDA with torch_native
            assert w["attention_backend"] == "TorchNativeAttnBackend" and w["decode_graph_runner"] is None
            assert w["captured_batch_sizes"] == [] and w["replays_by_batch_size"] == {}


@pytest.mark.parametrize("tp", [1, 2])
def test_decode_graph_tokens_equal_eager_at_several_replayed_sizes(model, prompts, tp):
    page_size = next(p for t, d, p in CONFIGS if (t, d) == (tp, GRAPHS_DTYPE))
    report = _run(model, tp, GRAPHS_DTYPE, page_size, json.dumps(prompts))
    graphs, later_graphs = report["tokens"], report["then"][0]["tokens"][0]
    *eager, later_eager = report["then"][1]["tokens"]
    # greedy: each request's tokens are the eager batch's, up to its own count
    assert graphs == [t[:n] for t, n in zip(eager, GRAPH_MAX_TOKENS)]
    assert later_graphs == later_eager
    workers = report["workers"]
    assert [w["tp_rank"] for w in workers] == list(range(tp))
    for w in workers:
        assert w["attention_backend"] == "NpuSimGraphAttnBackend"
        assert w["decode_graph_runner"] == "NpuSimDecodeGraphRunner"
        assert w["captured_batch_sizes"] == GRAPH_BATCH_SIZES
        replays = {int(size): n for size, n in w["replays_by_batch_size"].items()}
        # every captured size replayed; together at least one replay per decode step of the longest request
        assert set(replays) == set(GRAPH_BATCH_SIZES) and all(n > 0 for n in replays.values()), replays
        assert sum(replays.values()) >= 2 * (MAX_TOKENS - 1)  # the first batch's and the later prompt's
    # every rank replayed the same graphs (their all-reduces are re-issued at each replay)
    assert len({json.dumps(w["replays_by_batch_size"]) for w in workers}) == 1


@pytest.mark.parametrize("tp", [1, 2])
def test_float32_tokens_equal_vllm_on_npusim(model, prompts, tp):
    # in bfloat16 the two engines batch and chunk differently, so near-ties may break differently
    dtype = "float32"
    pytest.importorskip("vllm", reason="the vllm extra is not installed (scripts/install_vllm.sh)")
    from torch_npu_sim.integrations.vllm.offline import generate as vllm_generate

    ids, _ = prompts
    page_size = next(p for t, d, p in CONFIGS if (t, d) == (tp, dtype))
    sglang = _run(model, tp, dtype, page_size, json.dumps(prompts))
    vllm = vllm_generate(model, [{"prompt_token_ids": p} for p in ids], tp=tp, max_tokens=MAX_TOKENS,
                         engine_args={"dtype": dtype})
    assert sglang["tokens"] == [t[:n] for t, n in zip(vllm["tokens"], max_tokens(dtype))]


def test_seeded_sampling_reproduces_and_another_seed_differs(model, prompts):
    # SGLang seeds sampling per engine (--random-seed); its per-request sampling_seed needs its
    # deterministic mode, which no torch-native attention backend offers
    ids, _ = prompts

    def sample(seed):
        return generate(model, ids[:2], max_tokens=12, sampling=SAMPLED, engine_args=dict(random_seed=seed))["tokens"]

    first, again, other = sample(7), sample(7), sample(8)
    assert all(len(t) == 12 for batch in (first, again, other) for t in batch)
    assert first == again
    assert first != other


def test_engine_exits_cleanly(run):
    # generate() also raises unless the child exited 0
    assert run["report"]["children_after_shutdown"] == []


# --- the HTTP server --------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(model: str):
    """`sglang.launch_server` on npusim, once it answers /health; started again (up to
    PORT_RACE_ATTEMPTS times) when it lost a race for one of its ports to another process."""
    for attempt in range(PORT_RACE_ATTEMPTS):
        port = _free_port()
        server = subprocess.Popen(
            [sglang_python(), "-m", "sglang.launch_server", "--model-path", model, "--device", "npusim",
             "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-total-tokens", "4096",
             "--random-seed", "0"], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while server.poll() is None:
            try:
                if urllib.request.urlopen(f"{base}/health", timeout=5).status == 200:
                    return server, base
            except OSError:
                pass
            if time.monotonic() > deadline:
                _stop(server)
                raise AssertionError("server did not come up in 300 s")
            time.sleep(2)
        log = server.stdout.read()
        _stop(server)
        if not lost_a_port_race(log) or attempt == PORT_RACE_ATTEMPTS - 1:
            raise AssertionError(f"server exited: {log[-4000:]}")


def _stop(server) -> None:
    server.terminate()
    try:
        server.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(server.pid, signal.SIGKILL)  # schedulers and detokenizer left behind
    except ProcessLookupError:
        pass
    server.wait()


def test_openai_server_answers_a_real_client(model, prompts):
    import openai

    ids, _ = prompts
    offline = _run(model, 1, "float32", 1, json.dumps(prompts))  # with decode graphs; the server decodes eagerly
    assert max_tokens("float32")[0] == MAX_TOKENS
    server, base = _start_server(model)
    try:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
        assert [m.id for m in client.models.list().data] == [model]

        extra = dict(ignore_eos=True)
        completion = client.completions.create(model=model, prompt=ids[0], max_tokens=MAX_TOKENS, temperature=0,
                                               extra_body=extra)
        # the served text is what the offline engine produced for the same prompt
        assert completion.choices[0].text == offline["texts"][0]
        assert completion.usage.completion_tokens == MAX_TOKENS

        chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}],
                                              max_tokens=8, temperature=0, extra_body=extra)
        assert chat.choices[0].message.role == "assistant"
        assert chat.usage.completion_tokens == 8

        chunks = [c.choices[0].text for c in client.completions.create(
            model=model, prompt=ids[0], max_tokens=MAX_TOKENS, temperature=0, stream=True, extra_body=extra)
            if c.choices]
        assert len(chunks) > 1
        assert "".join(chunks) == completion.choices[0].text
    finally:
        _stop(server)


# --- the platform's pieces, tested inside SGLang's environment -------------------------

def test_platform_tests_pass_in_sglangs_environment():
    out = subprocess.run([sglang_python(), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/sglang_env"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "skipped" not in out.stdout, out.stdout[-2000:]
