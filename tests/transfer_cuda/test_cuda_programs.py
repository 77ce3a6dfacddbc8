"""CUDA-written programs run unchanged through the shim (NPUSIM_TRANSFER_CUDA=1), against the
same programs on the CPU: an AMP training loop, streams and events, a checkpoint round trip,
PyTorch's own CUDA module tests (common_nn), and the Hugging Face Trainer."""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

HERE = pathlib.Path(__file__).resolve().parent
PROGRAMS = HERE / "cuda_programs"


def _run(script, *args, shim=True, timeout=180, **env):
    environment = {**os.environ, "NPUSIM_TRANSFER_CUDA": "1" if shim else "0", **env}
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout,
                          env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("program", ["amp_training.py", "save_load.py"])
def test_cuda_program_on_npusim_equals_its_cpu_run(program):
    """Each program falls back to the CPU without CUDA; through the shim it runs on npusim."""
    on_npusim, on_cpu = _run(PROGRAMS / program), _run(PROGRAMS / program, shim=False)
    devices = {key: on_npusim.pop(key, None) for key in ("device", "devices", "default_devices")}
    assert all(str(d).count("npusim") for d in devices.values() if d is not None), devices
    for key in ("device", "devices", "default_devices"):
        on_cpu.pop(key, None)
    assert on_npusim == on_cpu  # losses, scale, weights, outputs: bit for bit


def test_streams_and_events_program_equals_the_same_arithmetic_on_the_cpu():
    result = _run(PROGRAMS / "streams_events.py")
    torch.manual_seed(0)
    a = torch.randn(128, 128)
    b = torch.relu(a @ a)
    assert result["device"] == "npusim:0" and result["elapsed_is_a_time"] and result["query"]
    assert result["b"] == b.sum().item() and result["c"] == (b * 2 + a).sum(dim=0).tolist()


# common_nn tests that fail on npusim, with why (checked strictly)
NN_EXPECTED_FAILURES = {
    "test_Embedding_sparse": "npusim tensors are dense: sparse gradients are refused",
    "test_EmbeddingBag_sparse": "npusim tensors are dense: sparse gradients are refused",
}


def test_pytorchs_own_cuda_module_tests_through_the_shim():
    result = _run(HERE / "pytorch_nn_cuda_tests.py", timeout=300)
    print(f"\ncommon_nn test_cuda through the shim: {result['total']} tests, {result['passed']} passed, "
          f"{result['failed']} failed, {result['skipped']} skipped (torch's own skips)")
    assert result["cuda_available"]
    assert set(result["failures"]) == set(NN_EXPECTED_FAILURES), result["failures"]
    assert result["passed"] == result["total"] - result["skipped"] - len(NN_EXPECTED_FAILURES)


def test_hugging_face_trainer_on_npusim_equals_the_cpu():
    pytest.importorskip("transformers", reason="transformers is not installed (scripts/install_transfer_cuda.sh)")
    pytest.importorskip("accelerate", reason="accelerate is not installed (scripts/install_transfer_cuda.sh)")
    on_cpu = _run(HERE / "trainer_run.py", "cpu", shim=False)
    # accelerate's generic accelerator support, with transformers' own device choice pointed at npusim
    generic = _run(HERE / "trainer_run.py", "device", shim=False, ACCELERATE_TORCH_DEVICE="npusim")
    # through the shim: transformers picks "cuda:0" (one device, as on a one-GPU machine)
    shimmed = _run(HERE / "trainer_run.py", "device", NPUSIM_DEVICE_COUNT="1")
    assert on_cpu["device"] == "cpu" and generic["device"] == shimmed["device"] == "npusim:0"
    assert len(on_cpu["losses"]) == 4
    assert generic["losses"] == on_cpu["losses"] == shimmed["losses"]


def test_environment_variable_and_report():
    code = "import torch; print(torch.cuda.is_available(), torch.zeros(1, device='cuda').device)"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                        env={**os.environ, "NPUSIM_TRANSFER_CUDA": "1"})
    assert on.stdout.split() == ["True", "npusim:0"], on.stderr[-2000:]
    off = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                         capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "NPUSIM_TRANSFER_CUDA"})
    assert off.stdout.strip() == "False"
    report = subprocess.run([sys.executable, "-m", "torch_npu_sim.transfer_cuda", "--report"], capture_output=True,
                            text=True, timeout=120)
    assert report.returncode == 0 and "unhandled: 0" in report.stdout and "Gaps:" in report.stdout, report.stderr
