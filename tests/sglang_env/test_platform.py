"""The SGLang platform's pieces, in SGLang's environment (tests/integrations/test_sglang.py starts it)."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("sglang", reason="runs in SGLang's environment (tests/integrations/test_sglang.py starts it)")

import torch  # noqa: E402


def _python(code: str, **env) -> str:
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_sglang_picks_npusim_and_the_plugin_declines_without_devices():
    code = "from sglang.srt.platforms import current_platform as p; print(type(p).__name__, p.device_type)"
    assert _python(code) == "NpuSimPlatform npusim"
    code = "from torch_npu_sim.integrations.sglang import register; print(register())"
    assert _python(code, NPUSIM_DEVICE_COUNT="0") == "None"


def test_platform_answers_from_torch_npusim():
    from sglang.srt.platforms import current_platform as p

    assert p.is_out_of_tree() and not p.is_cuda()
    assert p.get_torch_distributed_backend_str() == "npusim"
    assert p.get_device(1) == torch.device("npusim", 1)
    assert p.get_device_total_memory(0) == torch.npusim.get_device_properties(0).total_memory
    assert p.get_available_memory(0) == torch.npusim.mem_get_info(0)
    x = torch.ones(1 << 20, device="npusim")
    assert p.get_current_memory_usage(x.device) == torch.npusim.max_memory_allocated(x.device) >= x.nbytes
    assert p.get_default_attention_backend() == "torch_native"
    from sglang.srt.mem_cache.memory_pool import MHATokenToKVPool

    assert p.get_mha_kv_pool_cls() is MHATokenToKVPool


def test_page_size_picks_sglangs_token_allocator_or_the_paged_one():
    from sglang.srt.mem_cache.allocator.token import TokenToKVPoolAllocator

    from torch_npu_sim.integrations.sglang.allocator import (NpuSimPagedTokenToKVPoolAllocator,
                                                              NpuSimTokenToKVPoolAllocator)

    one = NpuSimTokenToKVPoolAllocator(64, page_size=1, dtype=torch.bfloat16, device="npusim", kvcache=None,
                                       need_sort=False)
    four = NpuSimTokenToKVPoolAllocator(64, page_size=4, dtype=torch.bfloat16, device="npusim", kvcache=None,
                                        need_sort=False)
    assert type(one) is TokenToKVPoolAllocator and type(four) is NpuSimPagedTokenToKVPoolAllocator
    assert one.free_pages.device.type == four.free_pages.device.type == "npusim"


def test_server_defaults_replace_only_what_the_user_left_unset():
    from types import SimpleNamespace

    from torch_npu_sim.integrations.sglang.server_args import NPUSIM_DEFAULTS, apply_npusim_defaults

    unset = SimpleNamespace(**{k: None for k in NPUSIM_DEFAULTS})
    apply_npusim_defaults(unset)
    assert vars(unset) == {k: v for k, (v, _) in NPUSIM_DEFAULTS.items()}
    chosen = SimpleNamespace(**{k: "mine" for k in NPUSIM_DEFAULTS})
    apply_npusim_defaults(chosen)
    assert set(vars(chosen).values()) == {"mine"}


def test_sglang_custom_ops_get_npusim_kernels_including_later_ones():
    from sglang.srt.platforms import current_platform
    from sglang.srt.utils import common

    from torch_npu_sim.integrations.sglang.custom_ops import cuda_only_ops

    current_platform.init_backend()
    assert cuda_only_ops() == []

    def npusim_test_scale(x: torch.Tensor, factor: float) -> torch.Tensor:
        return x * factor

    # registered the way SGLang's layers register theirs: for CUDA only
    common.direct_register_custom_op("npusim_test_scale", npusim_test_scale, mutates_args=[])
    x = torch.arange(4.0, device="npusim")
    assert torch.ops.sglang.npusim_test_scale(x, 2.0).tolist() == [0.0, 2.0, 4.0, 6.0]
    assert cuda_only_ops() == []


def test_torchvision_imports_and_its_missing_kernels_fail_clearly():
    import torchvision

    from torch_npu_sim.integrations.sglang.torchvision_compat import declare_missing_torchvision_ops

    assert torchvision.__version__.startswith("0.28")
    assert declare_missing_torchvision_ops() == []  # torchvision is imported: nothing more to do
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    with pytest.raises(RuntimeError, match="Couldn't load custom C\\+\\+ ops"):  # torchvision's own check
        torchvision.ops.nms(boxes, torch.tensor([1.0]), 0.5)
    with pytest.raises(NotImplementedError, match="torchvision::nms"):  # the declared operator has no kernel
        torch.ops.torchvision.nms(boxes, torch.tensor([1.0]), 0.5)


def test_an_unchecked_sglang_is_refused(monkeypatch):
    from torch_npu_sim.integrations.sglang import internals, platform

    monkeypatch.setattr(internals, "sglang_version", lambda: "0.9.0")
    with pytest.raises(internals.SglangVersionError, match="checked on SGLang 0.5.21 only, not 0.9.0"):
        platform.NpuSimPlatform()
