"""Every SGLang internal the npusim integration relies on (internals.SGLANG_INTERNALS) exists in
the installed SGLang; a newer SGLang that drops one fails here, naming it."""
import pytest

pytest.importorskip("sglang", reason="runs in SGLang's environment (tests/integrations/test_sglang.py starts it)")

from torch_npu_sim.integrations.sglang.internals import SGLANG_INTERNALS, missing_internals  # noqa: E402


def test_every_listed_sglang_internal_exists():
    assert len(SGLANG_INTERNALS) > 30
    assert missing_internals() == []


def test_a_missing_internal_is_named_with_what_is_gone():
    gone = ["sglang.srt.no_such_module:X",
            "sglang.srt.mem_cache.memory_pool:KVWriteLoc.no_such_attribute",
            "sglang.srt.model_executor.forward_batch_info:ForwardBatch#no_such_field",
            "sglang.srt.model_executor.runner_backend.full_cuda_graph_backend:FullCudaGraphBackend#no_such_state"]
    missing = missing_internals(gone)
    assert [m.split(": ", 1)[0] for m in missing] == gone
    assert "No module named 'sglang.srt.no_such_module'" in missing[0]
    assert "no attribute 'no_such_attribute'" in missing[1]
    assert "no longer sets self.no_such_field" in missing[2]
    assert "no longer sets self.no_such_state" in missing[3]
