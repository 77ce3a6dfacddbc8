"""Pinned host memory: torch's host-allocator registry finds npusim's allocator.

torch.accelerator.empty_host_cache() used to dereference a null host allocator (a
segfault) once npusim was the accelerator; vLLM calls it at shutdown. The calls run in a
child process so that a regression fails this test instead of killing the test run.
"""
import subprocess
import sys
import textwrap


def run_child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_empty_host_cache_after_device_and_pinned_allocations():
    result = run_child("""
        import torch
        x = torch.arange(8.0, device="npusim")
        pinned = torch.arange(16.0).pin_memory()
        assert pinned.is_pinned()
        torch.accelerator.empty_host_cache()
        # nothing live was released: the pinned tensor and a copy through it still hold their values
        assert torch.equal(pinned, torch.arange(16.0))
        back = torch.empty(8).pin_memory()
        back.copy_(x, non_blocking=True)
        torch.npusim.synchronize()
        assert torch.equal(back, torch.arange(8.0))
        torch.accelerator.empty_host_cache()
        print("host cache emptied")
    """)
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stderr[-3000:]}"
    assert "host cache emptied" in result.stdout


def test_empty_host_cache_before_any_allocation():
    result = run_child("""
        import torch
        torch.accelerator.empty_host_cache()
        print("host cache emptied")
    """)
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stderr[-3000:]}"


def test_pinned_allocations_are_pinned_and_freed():
    result = run_child("""
        import gc, torch
        blocks = [torch.empty(1 << 20, dtype=torch.uint8, pin_memory=True) for _ in range(4)]
        assert all(b.is_pinned() for b in blocks)
        ptrs = [b.data_ptr() for b in blocks]
        del blocks; gc.collect()
        import torch_npu_sim._C as C
        assert not any(C._is_pinned_ptr(p) for p in ptrs), "freed pinned blocks are still registered"
        print("ok")
    """)
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stderr[-3000:]}"
