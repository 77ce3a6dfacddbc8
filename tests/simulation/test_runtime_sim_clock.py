"""The runtime's simulated clock on its own: built with g++ (no torch) and run."""
import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNTIME = os.path.join(ROOT, "third_party", "npusim_runtime")


def test_runtime_sim_clock(tmp_path):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH to build the runtime tests")
    binary = str(tmp_path / "test_sim_clock")
    subprocess.run(
        [compiler, "-std=c++17", "-O1", "-Wall", "-Werror", "-I", os.path.join(RUNTIME, "include"),
         os.path.join(RUNTIME, "tests", "test_sim_clock.cpp"), *sorted(glob.glob(os.path.join(RUNTIME, "src", "*.cpp"))),
         "-o", binary, "-pthread"],
        check=True,
    )
    env = dict(os.environ, NPUSIM_DEVICE_COUNT="2", NPUSIM_DEVICE_MEMORY="1MiB")
    env.pop("NPUSIM_DEVICE_NAME", None)
    result = subprocess.run([binary], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sim clock tests passed" in result.stdout
