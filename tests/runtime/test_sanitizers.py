"""The simulated driver under ThreadSanitizer and AddressSanitizer+UBSan.

The runtime sources, its unit tests and its multi-threaded stress test
(third_party/npusim_runtime/tests/stress_runtime.cpp) are built with g++ -fsanitize=...
and run; any sanitizer report fails the test. Deliberately buggy canaries built the
same way must be caught, and every runtime object must carry the instrumentation, so
a clean run cannot come from a build that checks nothing. Skipped only when the
compiler cannot build and link with the sanitizer (the reason is shown).
"""
import glob
import os
import platform
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNTIME = os.path.join(ROOT, "third_party", "npusim_runtime")
CANARY = os.path.join(ROOT, "tests", "runtime", "sanitizer_canary.cpp")
RUNTIME_ENV = {"NPUSIM_DEVICE_COUNT": "3", "NPUSIM_DEVICE_MEMORY": "1MiB"}
CXXFLAGS = ["-std=c++17", "-O1", "-g", "-fno-omit-frame-pointer", "-Wall", "-Werror"]

SANITIZERS = {
    "thread": {
        "flags": ["-fsanitize=thread"],
        "markers": [b"__tsan_"],
        "env": {"TSAN_OPTIONS": "halt_on_error=1:exitcode=66:second_deadlock_stack=1"},
        "canaries": {"race": "ThreadSanitizer: data race"},
        "iterations": "5000",  # ~3 s on 2 cores (TSan is ~10x slower)
    },
    "address,undefined": {
        "flags": ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"],
        "markers": [b"__asan_", b"__ubsan_"],
        "env": {
            "ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1:new_delete_type_mismatch=1:detect_stack_use_after_return=1",
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
        },
        "canaries": {
            "use-after-free": "AddressSanitizer: heap-use-after-free",
            "overflow": "runtime error: signed integer overflow",
        },
        "iterations": "10000",  # ~1 s
    },
}
REPORT_WORDS = ("Sanitizer", "runtime error:")


class Build:
    def __init__(self, name, directory, prefix):
        self.name, self.dir, self.prefix = name, directory, prefix
        self.spec = SANITIZERS[name]

    def path(self, binary):
        return os.path.join(self.dir, binary)

    def run(self, binary, *args):
        env = dict(os.environ, **RUNTIME_ENV, **self.spec["env"])
        return subprocess.run([*self.prefix, self.path(binary), *args], env=env, capture_output=True,
                              text=True, timeout=120)


def _compile(args, cwd):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module", params=list(SANITIZERS))
def build(request, tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH to build the runtime tests")
    name = request.param
    flags = CXXFLAGS + SANITIZERS[name]["flags"]
    out = tmp_path_factory.mktemp("san")
    probe = out / "probe.cpp"
    probe.write_text("#include <thread>\nint main() { std::thread t([] {}); t.join(); return 0; }\n")
    result = _compile([compiler, *flags, str(probe), "-o", str(out / "probe"), "-pthread"], out)
    if result.returncode != 0:
        pytest.skip(f"{compiler} cannot build with -fsanitize={name}: {result.stderr.strip()[-400:]}")
    # Older TSan runtimes cannot map their shadow memory under high ASLR entropy; run
    # without address randomisation then, as the sanitizer's own documentation advises.
    prefix = []
    probe_run = subprocess.run([str(out / "probe")], capture_output=True, text=True, timeout=60)
    if probe_run.returncode != 0 and "memory mapping" in probe_run.stderr and shutil.which("setarch"):
        prefix = ["setarch", platform.machine(), "-R"]
        probe_run = subprocess.run([*prefix, str(out / "probe")], capture_output=True, text=True, timeout=60)
    assert probe_run.returncode == 0, f"a trivial -fsanitize={name} program fails: {probe_run.stderr[-2000:]}"

    include = ["-I", os.path.join(RUNTIME, "include")]
    objects = []
    for source in sorted(glob.glob(os.path.join(RUNTIME, "src", "*.cpp"))):
        obj = str(out / (os.path.basename(source) + ".o"))
        result = _compile([compiler, *flags, *include, "-c", source, "-o", obj], out)
        assert result.returncode == 0, result.stderr
        objects.append(obj)
    targets = {
        "test_runtime": os.path.join(RUNTIME, "tests", "test_runtime.cpp"),
        "stress_runtime": os.path.join(RUNTIME, "tests", "stress_runtime.cpp"),
    }
    for binary, source in targets.items():
        result = _compile([compiler, *flags, *include, source, *objects, "-o", str(out / binary), "-pthread"], out)
        assert result.returncode == 0, result.stderr
    result = _compile([compiler, *flags, CANARY, "-o", str(out / "canary"), "-pthread"], out)
    assert result.returncode == 0, result.stderr
    b = Build(name, str(out), prefix)
    b.objects = objects
    return b


def _assert_clean(result, banner):
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert banner in result.stdout, output[-6000:]
    assert not any(word in output for word in REPORT_WORDS), output[-6000:]


def test_canaries_are_caught(build):
    for mode, report in build.spec["canaries"].items():
        result = build.run("canary", mode)
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"-fsanitize={build.name} missed the {mode} canary:\n{output[-3000:]}"
        assert report in output, output[-3000:]
        assert "canary finished undetected" not in result.stdout


def test_runtime_objects_are_instrumented(build):
    for obj in build.objects:
        with open(obj, "rb") as f:
            data = f.read()
        for marker in build.spec["markers"]:
            assert marker in data, f"{obj} has no {marker.decode()} instrumentation"


def test_unit_tests_under_sanitizer(build):
    _assert_clean(build.run("test_runtime"), "runtime tests passed")


def test_multithreaded_stress_under_sanitizer(build):
    _assert_clean(build.run("stress_runtime", build.spec["iterations"]), "runtime stress passed")
