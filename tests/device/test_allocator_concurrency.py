"""Caching allocator under concurrency (per-device locks) and errors inside its deleter.

Each test runs in a fresh interpreter, so a deadlock shows as a timeout and a
std::terminate as a crash, instead of taking the test session down.
"""
import shutil
import subprocess

import pytest
import torch.utils.cpp_extension as cpp_extension

CONCURRENT = r"""
import threading, torch
DEVICES, THREADS, ITERATIONS = 3, 4, 300
KEYS = ["allocation.all.allocated", "allocation.all.freed", "allocation.all.current",
        "allocated_bytes.all.current", "active_bytes.all.current", "reserved_bytes.all.current",
        "segment.all.current"]
torch.npusim.synchronize()
torch.npusim.empty_cache()
before = [{k: torch.npusim.memory_stats(d)[k] for k in KEYS} for d in range(DEVICES)]
allocations = [[0] * DEVICES for _ in range(THREADS)]
errors = []
stop = threading.Event()

def worker(tid):
    try:
        streams = [torch.npusim.Stream(device=d) for d in range(DEVICES)]
        keep = []
        for i in range(ITERATIONS):
            d = (tid + i) % DEVICES  # every device is shared by several threads
            n = 512 * (1 + (tid * 7 + i) % 64)
            x = torch.empty(n, dtype=torch.uint8, device=f"npusim:{d}")
            allocations[tid][d] += 1
            x.fill_(tid + 1)
            if i % 5 == 0:
                x.record_stream(streams[d])  # reused only after an event on that stream
            host = x.cpu()
            if not bool((host == tid + 1).all()):
                errors.append(f"thread {tid}: block shared with another thread")
            keep.append(x)
            if len(keep) > 6:
                keep.pop(0)
        keep.clear()
    except Exception as e:  # reported by the main thread
        errors.append(f"thread {tid}: {e!r}")

def housekeeper():
    while not stop.is_set():
        for d in range(DEVICES):
            torch.npusim.memory_stats(d)
            torch.npusim.memory_allocated(d)
        torch.npusim.empty_cache()

threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
keeper = threading.Thread(target=housekeeper)
keeper.start()
for t in threads: t.start()
for t in threads: t.join()
stop.set(); keeper.join()
assert not errors, errors[:5]
torch.npusim.synchronize()
torch.npusim.empty_cache()
for d in range(DEVICES):
    after = {k: torch.npusim.memory_stats(d)[k] for k in KEYS}
    made = sum(a[d] for a in allocations)
    # every allocation and every free counted exactly once: no update lost to a race
    assert after["allocation.all.allocated"] - before[d]["allocation.all.allocated"] == made, (d, after, made)
    assert after["allocation.all.freed"] - before[d]["allocation.all.freed"] == made, (d, after, made)
    for k in KEYS[2:]:
        assert after[k] == before[d][k], (d, k, before[d][k], after[k])
print("concurrent allocator ok", [sum(a[d] for a in allocations) for d in range(DEVICES)])
"""


def test_threads_on_shared_devices_keep_exact_statistics(fresh_python):
    result = fresh_python(CONCURRENT, env={"NPUSIM_DEVICE_COUNT": "3"}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert "concurrent allocator ok" in result.stdout


# A DataPtr's deleter runs in a destructor (noexcept): a C++ exception escaping it would
# end the process through std::terminate. Freed twice here: the allocator must warn.
DOUBLE_FREE = r"""
#include <c10/core/Allocator.h>
extern "C" int double_free_in_destructor(size_t nbytes) {
  c10::Allocator* allocator = c10::GetAllocator(c10::DeviceType::PrivateUse1);
  c10::DataPtr owner = allocator->allocate(nbytes);
  allocator->raw_deallocate(owner.get());
  return 0;  // `owner` frees the same pointer again, from its destructor
}
"""

REPORTED = r"""
import ctypes, sys, torch
x = torch.ones(4, device="npusim")
base = torch.npusim.memory_allocated()
lib = ctypes.CDLL(sys.argv[1] if len(sys.argv) > 1 else LIB)
lib.double_free_in_destructor(ctypes.c_size_t(4096))
assert torch.npusim.memory_allocated() == base  # the one real free counted, the second ignored
y = torch.ones(1024, device="npusim") * 2       # and the allocator still works
assert y.sum().item() == 2048
print("survived the double free")
"""


def test_error_in_free_callback_is_reported_not_fatal(tmp_path, fresh_python):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH to build the double-free helper")
    source = tmp_path / "double_free.cpp"
    source.write_text(DOUBLE_FREE)
    lib = tmp_path / "double_free.so"
    torch_lib = cpp_extension.library_paths()[0]  # torch/lib, where libc10.so is
    includes = [f"-I{p}" for p in cpp_extension.include_paths()]
    subprocess.run([compiler, "-std=c++17", "-O1", "-shared", "-fPIC", *includes, str(source), "-o", str(lib),
                    f"-L{torch_lib}", "-lc10", f"-Wl,-rpath,{torch_lib}"], check=True, timeout=300)
    result = fresh_python(f"LIB = {str(lib)!r}\n" + REPORTED)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]  # -6: std::terminate
    assert "survived the double free" in result.stdout
    assert "npusim allocator: error while freeing memory" in result.stderr
    assert "is not a live npusim block" in result.stderr
