"""The simulated driver's configuration (NPUSIM_* variables), without torch: the parsers'
unit tests, and what the C API reports for a range of good, zero and bad environments."""
import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNTIME = os.path.join(ROOT, "third_party", "npusim_runtime")
INVALID_CONFIGURATION = 9  # npusimErrorInvalidConfiguration
INVALID_DEVICE = 3  # npusimErrorInvalidDevice
NPUSIM_VARS = ("NPUSIM_DEVICE_COUNT", "NPUSIM_DEVICE_MEMORY", "NPUSIM_DEVICE_NAME")


@pytest.fixture(scope="module")
def config_binary(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH to build the runtime configuration tests")
    out = str(tmp_path_factory.mktemp("rtconfig") / "test_config")
    sources = sorted(glob.glob(os.path.join(RUNTIME, "src", "*.cpp")))
    subprocess.run(
        [compiler, "-std=c++17", "-O1", "-Wall", "-Werror", "-I",
         os.path.join(RUNTIME, "include"), os.path.join(RUNTIME, "tests", "test_config.cpp"), *sources,
         "-o", out, "-pthread"],
        check=True,
    )
    return out


def report(binary, **variables) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in NPUSIM_VARS}
    env.update(variables)
    r = subprocess.run([binary, "report"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    first = r.stdout.splitlines()[0]
    head, _, error = first.partition(" error=")
    fields = dict(item.split("=", 1) for item in head.split(" ", 5)[:5] if "=" in item)
    fields["error"] = error
    if "name=" in head:
        fields["name"] = head.split("name=", 1)[1]
    return fields


def test_parser_unit_tests(config_binary):
    r = subprocess.run([config_binary, "unit"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "config tests passed" in r.stdout


@pytest.mark.parametrize("variables, count, memory, name", [
    ({}, 8, 16 * 2**30, "NPUSim-1"),
    ({"NPUSIM_DEVICE_COUNT": "64"}, 64, 16 * 2**30, "NPUSim-1"),
    ({"NPUSIM_DEVICE_COUNT": "1", "NPUSIM_DEVICE_MEMORY": "1.5GiB"}, 1, 3 * 2**29, "NPUSim-1"),
    ({"NPUSIM_DEVICE_MEMORY": "1073741824", "NPUSIM_DEVICE_NAME": "TestChip"}, 8, 2**30, "TestChip"),
])
def test_valid_configurations(config_binary, variables, count, memory, name):
    r = report(config_binary, **variables)
    assert (int(r["count"]), int(r["rc"]), int(r["props_rc"])) == (count, 0, 0), r
    assert int(r["memory"]) == memory and r["name"] == name and r["error"] == "(none)", r


def test_zero_devices_is_valid_but_has_no_device(config_binary):
    r = report(config_binary, NPUSIM_DEVICE_COUNT="0")
    assert (int(r["count"]), int(r["rc"]), r["error"]) == (0, 0, "(none)"), r
    assert int(r["malloc_rc"]) == INVALID_DEVICE and int(r["set_device_rc"]) == INVALID_DEVICE, r


@pytest.mark.parametrize("variable, value", [
    ("NPUSIM_DEVICE_COUNT", "abc"), ("NPUSIM_DEVICE_COUNT", "65"), ("NPUSIM_DEVICE_COUNT", "-1"),
    ("NPUSIM_DEVICE_COUNT", ""), ("NPUSIM_DEVICE_COUNT", "2.5"),
    ("NPUSIM_DEVICE_MEMORY", "16GiBx"), ("NPUSIM_DEVICE_MEMORY", "nan"), ("NPUSIM_DEVICE_MEMORY", "inf"),
    ("NPUSIM_DEVICE_MEMORY", "1e30"), ("NPUSIM_DEVICE_MEMORY", "-1GiB"), ("NPUSIM_DEVICE_MEMORY", "0"),
    ("NPUSIM_DEVICE_MEMORY", "99999999999PiB"), ("NPUSIM_DEVICE_MEMORY", ""),
    ("NPUSIM_DEVICE_NAME", "x" * 64), ("NPUSIM_DEVICE_NAME", ""),
])
def test_invalid_configuration_disables_every_call(config_binary, variable, value):
    r = report(config_binary, **{variable: value})
    assert int(r["count"]) == 0 and int(r["rc"]) == INVALID_CONFIGURATION, r
    assert int(r["malloc_rc"]) == INVALID_CONFIGURATION and int(r["set_device_rc"]) == INVALID_CONFIGURATION, r
    shown = value if len(value) <= 80 else value[:80] + "..."
    assert variable in r["error"] and f"got '{shown}'" in r["error"], r


def test_every_invalid_variable_is_named(config_binary):
    r = report(config_binary, NPUSIM_DEVICE_COUNT="lots", NPUSIM_DEVICE_MEMORY="16GiBx", NPUSIM_DEVICE_NAME="ok")
    assert "NPUSIM_DEVICE_COUNT" in r["error"] and "'lots'" in r["error"], r
    assert "NPUSIM_DEVICE_MEMORY" in r["error"] and "'16GiBx'" in r["error"], r
    assert "NPUSIM_DEVICE_NAME" not in r["error"], r
