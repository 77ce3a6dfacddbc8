"""A bad or zero NPUSIM_* configuration never breaks a program that does not use npusim.

Each configuration runs in a fresh interpreter (the runtime reads the environment once):
plain CPU PyTorch must work and give the same numbers as without npusim; one warning names
the variable; npusim reports no devices; only using npusim raises, naming the variable and
its value. Valid configurations still configure the devices.
"""
import json
import os
import subprocess
import sys

import pytest

NPUSIM_VARS = ("NPUSIM_DEVICE_COUNT", "NPUSIM_DEVICE_MEMORY", "NPUSIM_DEVICE_NAME")

# A CPU-only program: seeding (torch.manual_seed reaches every device module), random
# numbers, a small training step, a DataLoader. Prints JSON.
CPU_PROGRAM = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import torch
    torch.manual_seed(0)
    torch.seed()
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    batches = [b[0].sum().item() for b in torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=8)]
    rng = torch.get_rng_state()
    torch.set_rng_state(rng)
out = {"losses": losses, "batches": batches, "randn": torch.randn(3).tolist(),
       "warnings": [str(w.message) for w in caught if "npusim" in str(w.message).lower()]}
"""

NPUSIM_STATE = """
import torch_npu_sim
out["available"] = torch.npusim.is_available()
out["count"] = torch.npusim.device_count()
out["accelerator_available"] = torch.accelerator.is_available()
out["routed_mse_loss"] = torch_npu_sim._C._op_is_routed("aten::mse_loss")
errors = {}
for what, use in [
    ("tensor", lambda: torch.ones(2, device="npusim")),
    ("to", lambda: torch.ones(2).to("npusim")),
    ("properties", lambda: torch.npusim.get_device_properties(0)),
    ("synchronize", lambda: torch.npusim.synchronize()),
    ("rng_state", lambda: torch.npusim.get_rng_state()),
]:
    try:
        use()
        errors[what] = None
    except Exception as e:
        errors[what] = f"{type(e).__name__}: {e}"
out["errors"] = errors
print(json.dumps(out))
"""

BAD_CONFIGS = [
    ("NPUSIM_DEVICE_COUNT", "0"),
    ("NPUSIM_DEVICE_COUNT", "abc"),
    ("NPUSIM_DEVICE_COUNT", "65"),
    ("NPUSIM_DEVICE_COUNT", "-1"),
    ("NPUSIM_DEVICE_COUNT", ""),
    ("NPUSIM_DEVICE_MEMORY", "16GiBx"),
    ("NPUSIM_DEVICE_MEMORY", "nan"),
    ("NPUSIM_DEVICE_MEMORY", "1e30"),
    ("NPUSIM_DEVICE_MEMORY", "-1"),
    ("NPUSIM_DEVICE_MEMORY", "0"),
    ("NPUSIM_DEVICE_MEMORY", "99999999999PiB"),
    ("NPUSIM_DEVICE_NAME", "n" * 64),
]


def run_clean(code: str, variables: dict, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter whose NPUSIM_* variables are exactly `variables`."""
    env = {k: v for k, v in os.environ.items() if k not in NPUSIM_VARS}
    env.update(variables)
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)


def run_json(code: str, variables: dict, extra_env: dict | None = None) -> dict:
    r = run_clean(code, variables, extra_env)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cpu_reference():
    """The CPU program's results without npusim loaded at all."""
    return run_json(CPU_PROGRAM + "\nprint(json.dumps(out))\n", {}, {"TORCH_DEVICE_BACKEND_AUTOLOAD": "0"})


@pytest.mark.parametrize("variable, value", BAD_CONFIGS, ids=[f"{k}={v[:12]!r}" for k, v in BAD_CONFIGS])
def test_bad_or_zero_configuration_leaves_torch_working(cpu_reference, variable, value):
    out = run_json(CPU_PROGRAM + NPUSIM_STATE, {variable: value})
    # the CPU program works, with the numbers it has without npusim
    for key in ("losses", "batches", "randn"):
        assert out[key] == cpu_reference[key], key
    # exactly one warning, naming the variable (and the value, when it is invalid)
    assert len(out["warnings"]) == 1, out["warnings"]
    assert variable in out["warnings"][0] and "npusim is disabled" in out["warnings"][0]
    if value != "0":
        assert f"got '{value}'" in out["warnings"][0]
    assert (out["available"], out["count"], out["accelerator_available"]) == (False, 0, False)
    assert out["routed_mse_loss"] is False  # nothing rerouted without devices
    # using npusim raises a clear error that names the variable
    for what, error in out["errors"].items():
        assert error is not None, f"{what} did not raise"
        assert error.startswith("RuntimeError: npusim is unavailable: "), (what, error)
        assert variable in error, (what, error)
        if value != "0":
            assert f"got '{value}'" in error, (what, error)


def test_warnings_as_errors_do_not_break_import():
    r = run_clean("import torch; torch.manual_seed(0); print(torch.randn(2).shape, torch.npusim.is_available())",
                  {"NPUSIM_DEVICE_COUNT": "abc"}, {"PYTHONWARNINGS": "error"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["torch.Size([2])", "False"]
    assert "NPUSIM_DEVICE_COUNT" in r.stderr and "'abc'" in r.stderr


def test_zero_devices_error_messages():
    out = run_json(CPU_PROGRAM + NPUSIM_STATE, {"NPUSIM_DEVICE_COUNT": "0"})
    assert "NPUSIM_DEVICE_COUNT=0" in out["warnings"][0]
    assert "NPUSIM_DEVICE_COUNT=0 configures no devices" in out["errors"]["tensor"]


GOOD_CONFIGS = [
    ({}, 8, 16 * 2**30, "NPUSim-1"),
    ({"NPUSIM_DEVICE_COUNT": "2", "NPUSIM_DEVICE_MEMORY": "1.5GiB", "NPUSIM_DEVICE_NAME": "Chip X"}, 2,
     3 * 2**29, "Chip X"),
    ({"NPUSIM_DEVICE_COUNT": " 1 ", "NPUSIM_DEVICE_MEMORY": "512 MiB"}, 1, 512 * 2**20, "NPUSim-1"),
    ({"NPUSIM_DEVICE_MEMORY": "1073741824", "NPUSIM_DEVICE_NAME": "n" * 63}, 8, 2**30, "n" * 63),
]


@pytest.mark.parametrize("variables, count, memory, name", GOOD_CONFIGS)
def test_good_configuration(cpu_reference, variables, count, memory, name):
    code = CPU_PROGRAM + """
import torch_npu_sim
p = torch.npusim.get_device_properties(torch.npusim.device_count() - 1)
t = torch.arange(4.0, device=f"npusim:{torch.npusim.device_count() - 1}") * 2
out.update(available=torch.npusim.is_available(), count=torch.npusim.device_count(), memory=p.total_memory,
           name=p.name, t=t.cpu().tolist(), routed=torch_npu_sim._C._op_is_routed("aten::mse_loss"))
print(json.dumps(out))
"""
    out = run_json(code, variables)
    assert out["warnings"] == []
    assert out["losses"] == cpu_reference["losses"] and out["randn"] == cpu_reference["randn"]
    assert (out["available"], out["count"], out["memory"], out["name"]) == (True, count, memory, name)
    assert out["t"] == [0.0, 2.0, 4.0, 6.0] and out["routed"] is True
