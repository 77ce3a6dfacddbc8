"""Decode graphs on npusim are opt-in: SGLang's server arguments resolve to eager decoding unless
the decode graph is asked for, and then to full decode graphs with prefill graphs off; what npusim
graphs do not support is refused by name."""
import pytest

pytest.importorskip("sglang", reason="runs in SGLang's environment (tests/integrations/test_sglang.py starts it)")

from sglang.srt.plugins import load_plugins  # noqa: E402
from sglang.srt.server_args import ServerArgs  # noqa: E402

from torch_npu_sim.integrations.vllm.tiny_model import make_tiny_llama  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    load_plugins()  # as SGLang's launchers do: the npusim plugin wraps the torch_native rule
    return make_tiny_llama(str(tmp_path_factory.mktemp("sglang") / "tiny-llama"))


def _graph_backends(model: str, **args) -> tuple[str, str, str]:
    server_args = ServerArgs(model_path=model, device="npusim", **args)
    server_args.resolve_once()
    resolved = server_args.resolved_dict()
    graphs = resolved["cuda_graph_config"]
    return resolved["attention_backend"], graphs["decode"]["backend"], graphs["prefill"]["backend"]


def test_decode_graphs_stay_off_unless_asked_for(model):
    assert _graph_backends(model) == ("torch_native", "disabled", "disabled")
    assert _graph_backends(model, disable_decode_cuda_graph=True) == ("torch_native", "disabled", "disabled")


def test_asked_for_decode_graphs_are_full_graphs_and_prefill_stays_eager(model):
    assert _graph_backends(model, cuda_graph_backend_decode="full") == ("torch_native", "full", "disabled")
    asked_by_config = dict(cuda_graph_config={"decode": {"backend": "full", "bs": [1, 2]}})
    assert _graph_backends(model, **asked_by_config) == ("torch_native", "full", "disabled")


def test_other_decode_graph_backends_are_refused(model):
    with pytest.raises(ValueError, match="'full' backend only, not 'breakable'"):
        _graph_backends(model, cuda_graph_backend_decode="breakable")


def test_graph_runner_refuses_what_npusim_graphs_do_not_support(monkeypatch):
    from types import SimpleNamespace

    from torch_npu_sim.integrations.sglang import graphs

    runner = SimpleNamespace(spec_algorithm=SimpleNamespace(is_none=lambda: False))
    with pytest.raises(NotImplementedError, match="speculative decoding"):
        graphs.NpuSimDecodeGraphRunner(runner)
    runner.spec_algorithm = SimpleNamespace(is_none=lambda: True)
    compiled = SimpleNamespace(capture=SimpleNamespace(enable_torch_compile=True))
    monkeypatch.setattr(graphs, "get_flags", lambda: compiled)
    with pytest.raises(NotImplementedError, match="--enable-torch-compile"):
        graphs.NpuSimDecodeGraphRunner(runner)
