import os
import subprocess
import sys
import textwrap

import pytest


def run_python(code: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (fresh device configuration), with a hard time limit."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def fresh_python():
    return run_python


@pytest.fixture
def no_host_copies(monkeypatch):
    """Fails the test if an npusim storage or tensor is copied to the CPU during it, or if no
    Triton kernel ran in place on npusim memory (the Triton tests' no-copy check)."""
    import torch

    import torch_npu_sim.integrations.triton as npusim_triton

    copies = []
    storage_cpu, tensor_cpu = torch.UntypedStorage.cpu, torch.Tensor.cpu

    def spy(original, what):
        def cpu(self, *args, **kwargs):
            if self.device.type == "npusim":
                copies.append(what)
            return original(self, *args, **kwargs)
        return cpu

    monkeypatch.setattr(torch.UntypedStorage, "cpu", spy(storage_cpu, "UntypedStorage.cpu"))
    monkeypatch.setattr(torch.Tensor, "cpu", spy(tensor_cpu, "Tensor.cpu"))
    before = npusim_triton.counters()["zero_copy_launches"]
    yield copies
    monkeypatch.undo()
    assert copies == [], f"npusim memory was copied to the host: {copies}"
    assert npusim_triton.counters()["zero_copy_launches"] > before
