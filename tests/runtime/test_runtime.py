"""The simulated driver on its own: built with g++ (no torch headers) and run."""
import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNTIME = os.path.join(ROOT, "third_party", "npusim_runtime")


def _build(tmp_path_factory, test_source):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH to build the runtime tests")
    out = str(tmp_path_factory.mktemp("rt") / os.path.splitext(test_source)[0])
    sources = sorted(glob.glob(os.path.join(RUNTIME, "src", "*.cpp")))
    subprocess.run(
        [compiler, "-std=c++17", "-O1", "-Wall", "-Werror", "-I", os.path.join(RUNTIME, "include"),
         os.path.join(RUNTIME, "tests", test_source), *sources, "-o", out, "-pthread"],
        check=True,
    )
    return out


def _run(binary, *args, memory="1MiB"):
    env = dict(os.environ, NPUSIM_DEVICE_COUNT="3", NPUSIM_DEVICE_MEMORY=memory)
    return subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=60)


def test_runtime_unit_tests(tmp_path_factory):
    result = _run(_build(tmp_path_factory, "test_runtime.cpp"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "runtime tests passed" in result.stdout


def test_runtime_stress(tmp_path_factory):
    # the optimised build, where real parallelism is highest (sanitized runs: test_sanitizers.py)
    result = _run(_build(tmp_path_factory, "stress_runtime.cpp"), "20000")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "runtime stress passed" in result.stdout


def test_runtime_includes_no_torch_headers():
    for path in glob.glob(os.path.join(RUNTIME, "**", "*.*"), recursive=True):
        with open(path, errors="ignore") as f:
            text = f.read()
        assert "#include <torch" not in text and "#include <ATen" not in text and "#include <c10" not in text, path


def test_runtime_ipc(tmp_path_factory):
    # sharing device memory with another process, a forked child's copy-on-write view
    result = _run(_build(tmp_path_factory, "test_ipc.cpp"), memory="64MiB")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ipc tests passed" in result.stdout
