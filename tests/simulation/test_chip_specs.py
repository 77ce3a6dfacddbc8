"""Chip specifications: presets with cited figures, custom JSON specs, NPUSIM_CHIP and the device properties."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from torch_npu_sim.simulation import chips

NUMERIC = [f.name for f in dataclasses.fields(chips.ChipSpec) if f.name not in ("name", "sources")]


@pytest.mark.parametrize("name", sorted(chips.PRESETS))
def test_presets_are_valid_and_cited(name):
    spec = chips.PRESETS[name]
    assert spec.name.lower() == name and chips.resolve(name) is chips.resolve(spec.name) is spec
    assert spec.peak_flops_int8 >= spec.peak_flops_bf16 >= spec.peak_flops_fp32
    if name != "npusim-1":  # every figure of a real chip class says where it comes from
        assert set(NUMERIC) <= set(spec.sources), sorted(set(NUMERIC) - set(spec.sources))
        assert all(spec.sources[f].strip() for f in NUMERIC)


def test_a_custom_spec_file(tmp_path):
    data = chips.PRESETS["a100-sxm4-80gb"].to_dict()
    data.update(name="my-chip", peak_flops_bf16=1e15, sources={})
    path = tmp_path / "chip.json"
    path.write_text(json.dumps(data))
    spec = chips.resolve(str(path))
    assert spec.name == "my-chip" and spec.peak_flops_bf16 == 1e15


@pytest.mark.parametrize("change, message", [
    ({"memory_bandwidth": 0}, "memory_bandwidth must be a finite number > 0"),
    ({"cores": 1.5}, "cores must be an integer > 0"),
    ({"topology": "torus"}, "topology must be one of"),
    ({"launch_latency_s": -1}, "launch_latency_s must be a finite number >= 0"),
    ({"bogus": 1}, "unknown fields ['bogus']"),
])
def test_bad_specs_name_the_problem(tmp_path, change, message):
    data = chips.PRESETS["npusim-1"].to_dict()
    data.update(change)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as e:
        chips.resolve(str(path))
    assert message in str(e.value)


def test_missing_fields_unknown_presets_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match=r"missing fields \['cores'"):
        chips.from_dict({k: v for k, v in chips.PRESETS["npusim-1"].to_dict().items() if k != "cores"})
    with pytest.raises(ValueError, match="unknown chip 'tpu-v9'"):
        chips.resolve("tpu-v9")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        chips.resolve(str(tmp_path / "x.json"))
    with pytest.raises(ValueError, match="cannot read chip spec file"):
        chips.resolve(str(tmp_path / "absent.json"))


def test_npusim_chip_sets_name_memory_and_cores():
    # NPUSIM_DEVICE_MEMORY / NPUSIM_DEVICE_NAME would win over the chip: unset here
    env = {k: v for k, v in os.environ.items() if k not in ("NPUSIM_DEVICE_MEMORY", "NPUSIM_DEVICE_NAME")}
    env.update(NPUSIM_CHIP="a100-sxm4-80gb", NPUSIM_SIM_TIMING="1")
    code = ("import torch\nfrom torch_npu_sim import simulation as sim\n"
            "p = torch.npusim.get_device_properties(0)\n"
            "print(sim.get_chip().name, sim.enabled(), sim.simulated_timing(), p.name, p.total_memory >> 30, "
            "p.multi_processor_count, p.peak_flops['bf16'])\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["a100-sxm4-80gb", "True", "True", "a100-sxm4-80gb", "80", "108", "312000000000000.0"]


def test_npusim_device_memory_overrides_the_chip(fresh_python):
    result = fresh_python("""
        import torch
        p = torch.npusim.get_device_properties(0)
        print(p.total_memory >> 20, p.multi_processor_count)
    """, env={"NPUSIM_CHIP": "edge-npu", "NPUSIM_DEVICE_MEMORY": "512MiB"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["512", "3"]


def test_a_bad_npusim_chip_warns_and_keeps_torch_working(fresh_python):
    result = fresh_python("""
        import torch
        from torch_npu_sim import simulation as sim
        print(torch.ones(2, device="npusim").sum().item(), sim.get_chip().name)
    """, env={"NPUSIM_CHIP": "no-such-chip"})
    assert result.returncode == 0, result.stderr
    assert "NPUSIM_CHIP: unknown chip 'no-such-chip'" in result.stderr
    assert result.stdout.split() == ["2.0", "NPUSim-1"]


def test_choosing_the_default_chip_again_keeps_the_default_device_name():
    from torch_npu_sim import simulation as sim

    before = torch.npusim.get_device_name(0)
    previous = sim.get_chip()
    sim.set_chip("h100-sxm5-80gb")
    try:
        assert sim.get_chip().name in torch.npusim.get_device_name(0)
    finally:
        sim.set_chip(previous)
    assert torch.npusim.get_device_name(0) == before == "NPUSim-1"
    assert sim.set_chip("NPUSIM-1") is chips.PRESETS["npusim-1"]
