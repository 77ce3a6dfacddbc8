"""Protected device memory in the runtime alone (no torch): built with g++ from the
runtime's sources and a small driver program, run with and without NPUSIM_PROTECT_MEMORY."""
import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNTIME = os.path.join(ROOT, "third_party", "npusim_runtime")

DRIVER = r'''
#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>
#include "npusim_runtime.h"

#define CHECK(cond) do { if (!(cond)) { std::printf("FAILED %s:%d %s\n", __FILE__, __LINE__, #cond); return 1; } } while (0)

static void fill_ones(void* p) { std::memset(p, 1, 4096); }
static void sum_bytes(void* arg) {
  auto* a = static_cast<std::pair<const unsigned char*, long>*>(arg);
  for (int i = 0; i < 4096; ++i) a->second += a->first[i];
}

int main(int argc, char** argv) {
  std::string mode = argv[1];
  void* dev = nullptr;
  CHECK(npusimMalloc(&dev, 4096) == npusimSuccess);
  if (mode == "work") {
    // launches, copies and fills reach device memory; nested scopes; several threads at once
    CHECK(npusimLaunchHostFunc(nullptr, fill_ones, dev) == npusimSuccess);
    std::vector<unsigned char> host(4096, 0);
    CHECK(npusimMemcpy(host.data(), dev, 4096, npusimMemcpyDeviceToHost) == npusimSuccess);
    CHECK(host[0] == 1 && host[4095] == 1);
    CHECK(npusimMemsetAsync(dev, 2, 4096, nullptr) == npusimSuccess);
    void* dev2 = nullptr;
    CHECK(npusimMalloc(&dev2, 100000) == npusimSuccess);
    CHECK(npusimMemcpy(dev2, dev, 4096, npusimMemcpyDeviceToDevice) == npusimSuccess);
    CHECK(npusimDeviceAccessBegin() == npusimSuccess);
    CHECK(static_cast<unsigned char*>(dev2)[10] == 2);  // inside a scope the host may look
    void* inside = nullptr;                               // allocated inside a scope: open too
    CHECK(npusimMalloc(&inside, 64) == npusimSuccess);
    static_cast<char*>(inside)[0] = 7;
    CHECK(npusimDeviceAccessEnd() == npusimSuccess);
    // no scope open: refused in the mode (without it the calls only check the mode)
    CHECK(npusimDeviceAccessEnd() == (npusimProtectedMemoryEnabled() ? npusimErrorInvalidValue : npusimSuccess));
    std::atomic<long> total{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&] {
        for (int i = 0; i < 200; ++i) {
          std::pair<const unsigned char*, long> arg{static_cast<const unsigned char*>(dev2), 0};
          npusimLaunchHostFunc(nullptr, sum_bytes, &arg);
          total += arg.second;
        }
      });
    for (auto& t : threads) t.join();
    CHECK(total == 4L * 200 * 4096 * 2);
    CHECK(npusimFree(dev2) == npusimSuccess && npusimFree(inside) == npusimSuccess);
    std::printf("openings=%llu protected=%d\n", (unsigned long long)npusimDeviceAccessOpenings(),
                npusimProtectedMemoryEnabled());
    std::printf("work ok\n");
    return 0;
  }
  if (mode == "host-read") {
    std::printf("reading\n");
    std::fflush(stdout);
    volatile unsigned char v = static_cast<unsigned char*>(dev)[100];
    std::printf("read %d\n", v);
    return 0;
  }
  if (mode == "freed-then-reused") {
    // a freed protected allocation is unmapped; pinned host memory is never protected
    void* pinned = nullptr;
    CHECK(npusimHostAlloc(&pinned, 4096) == npusimSuccess);
    static_cast<char*>(pinned)[0] = 1;
    CHECK(npusimFree(dev) == npusimSuccess);
    CHECK(npusimFreeHost(pinned) == npusimSuccess);
    std::printf("freed ok\n");
    return 0;
  }
  return 2;
}
'''


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH to build the runtime")
    d = tmp_path_factory.mktemp("protect")
    src = d / "driver.cpp"
    src.write_text(DRIVER)
    out = str(d / "driver")
    subprocess.run([compiler, "-std=c++17", "-O1", "-Wall", "-Werror", "-I", os.path.join(RUNTIME, "include"),
                    str(src), *sorted(glob.glob(os.path.join(RUNTIME, "src", "*.cpp"))), "-o", out, "-pthread"],
                   check=True)
    return out


def _run(binary, mode, protect):
    env = dict(os.environ, NPUSIM_DEVICE_COUNT="1", NPUSIM_DEVICE_MEMORY="64MiB")
    env.pop("NPUSIM_PROTECT_MEMORY", None)
    if protect:
        env["NPUSIM_PROTECT_MEMORY"] = "1"
    return subprocess.run([binary, mode], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("protect", [False, True])
def test_launches_copies_and_threads_work(driver, protect):
    r = _run(driver, "work", protect)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "work ok" in r.stdout
    openings = int(r.stdout.split("openings=")[1].split()[0])
    assert (openings > 0) == protect
    assert f"protected={int(protect)}" in r.stdout


def test_host_read_outside_a_scope_is_reported(driver):
    r = _run(driver, "host-read", protect=True)
    assert r.returncode != 0
    assert "reading" in r.stdout and "read " not in r.stdout.replace("reading", "")
    assert "host code accessed npusim device memory at 0x" in r.stderr, r.stderr
    assert "(npusim:0 allocation of 4096 bytes at 0x" in r.stderr
    assert "outside a kernel launch or runtime copy" in r.stderr and "native backtrace" in r.stderr


def test_host_read_without_the_mode_works(driver):
    r = _run(driver, "host-read", protect=False)
    assert r.returncode == 0, r.stderr
    assert "read 0" in r.stdout


@pytest.mark.parametrize("protect", [False, True])
def test_free_and_pinned_memory(driver, protect):
    r = _run(driver, "freed-then-reused", protect)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "freed ok" in r.stdout
