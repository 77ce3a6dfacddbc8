"""Caching allocator: exact statistics, caching, OOM, storage resize."""
import pytest
import torch

MiB = 2**20


def stats(device=0):
    return torch.npusim.memory_stats(device)


def test_allocated_bytes_rise_and_fall_exactly():
    torch.npusim.synchronize()
    base = torch.npusim.memory_allocated()
    x = torch.empty(1024, dtype=torch.float32, device="npusim")  # 4096 bytes, a multiple of 512
    assert torch.npusim.memory_allocated() == base + 4096
    y = torch.empty(MiB, dtype=torch.uint8, device="npusim")
    assert torch.npusim.memory_allocated() == base + 4096 + MiB
    del x
    assert torch.npusim.memory_allocated() == base + MiB
    del y
    assert torch.npusim.memory_allocated() == base
    assert torch.accelerator.memory_allocated(0) == base


def test_small_sizes_are_rounded_to_512_bytes():
    base = torch.npusim.memory_allocated()
    x = torch.empty(3, dtype=torch.uint8, device="npusim")
    assert torch.npusim.memory_allocated() == base + 512
    assert stats()["requested_bytes.all.current"] >= 3
    del x


def test_cache_reuses_blocks_and_empty_cache_releases_them():
    torch.npusim.empty_cache()
    reserved0 = torch.npusim.memory_reserved()
    x = torch.empty(4 * MiB, dtype=torch.uint8, device="npusim")
    assert torch.npusim.memory_reserved() == reserved0 + 4 * MiB
    allocs = stats()["num_device_alloc"]
    ptr = x.data_ptr()
    del x
    assert torch.npusim.memory_reserved() == reserved0 + 4 * MiB  # kept in the cache
    y = torch.empty(4 * MiB, dtype=torch.uint8, device="npusim")
    assert y.data_ptr() == ptr and stats()["num_device_alloc"] == allocs  # no new device allocation
    del y
    torch.npusim.empty_cache()
    assert torch.npusim.memory_reserved() == reserved0


def test_peak_statistics_and_reset():
    torch.npusim.reset_peak_memory_stats()
    base = torch.npusim.memory_allocated()
    x = torch.empty(2 * MiB, dtype=torch.uint8, device="npusim")
    del x
    assert torch.npusim.max_memory_allocated() == base + 2 * MiB
    assert torch.accelerator.max_memory_allocated(0) == base + 2 * MiB
    torch.npusim.reset_peak_memory_stats()
    assert torch.npusim.max_memory_allocated() == base
    assert torch.npusim.max_memory_reserved() >= torch.npusim.memory_reserved()


def test_memory_stats_use_cuda_key_names():
    s = stats()
    for key in ["allocated_bytes.all.current", "allocated_bytes.all.peak", "reserved_bytes.all.current",
                "active_bytes.all.current", "allocation.all.current", "segment.all.current",
                "num_alloc_retries", "num_ooms", "allocated_bytes.small_pool.current",
                "allocated_bytes.large_pool.current"]:
        assert key in s, key


def test_devices_are_accounted_separately():
    base1, base2 = torch.npusim.memory_allocated(1), torch.npusim.memory_allocated(2)
    x = torch.empty(MiB, dtype=torch.uint8, device="npusim:2")
    assert torch.npusim.memory_allocated(2) == base2 + MiB
    assert torch.npusim.memory_allocated(1) == base1
    free, total = torch.accelerator.get_memory_info(2)
    assert free <= total - MiB
    del x


def test_untyped_storage_resize_frees_and_restores():
    x = torch.arange(1024, dtype=torch.float32, device="npusim")
    base = torch.npusim.memory_allocated() - 4096
    storage = x.untyped_storage()
    storage.resize_(0)  # how FSDP2 frees a parameter
    assert storage.size() == 0 and torch.npusim.memory_allocated() == base
    storage.resize_(4096)
    assert torch.npusim.memory_allocated() == base + 4096
    x.fill_(2.0)
    assert x.sum().item() == 2048.0


def test_tensor_resize_keeps_contents():
    x = torch.arange(4, dtype=torch.float32, device="npusim")
    x.resize_(8)
    assert x.shape == (8,) and x[:4].cpu().tolist() == [0.0, 1.0, 2.0, 3.0]


def test_oom_raises_out_of_memory_error_after_freeing_cache(fresh_python):
    r = fresh_python("""
        import torch
        MiB = 2**20
        cached = torch.empty(40 * MiB, dtype=torch.uint8, device="npusim")
        del cached                         # 40 MiB now sits in the cache
        keep = torch.empty(50 * MiB, dtype=torch.uint8, device="npusim")   # fits only after freeing the cache
        s = torch.npusim.memory_stats()
        print("retries", s["num_alloc_retries"], "ooms", s["num_ooms"])
        try:
            torch.empty(20 * MiB, dtype=torch.uint8, device="npusim")
        except torch.OutOfMemoryError as e:
            print("OOM:", e)
        s = torch.npusim.memory_stats()
        print("after", s["num_ooms"], torch.npusim.memory_allocated() == 50 * MiB)
        keep += 1                          # nothing lost: the live tensor is still usable
        print("sum", int(keep[:1000].sum().item()) == 1000)
    """, env={"NPUSIM_DEVICE_MEMORY": "64MiB"})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "retries 1 ooms 0" in out
    assert "OOM: npusim out of memory. Tried to allocate 20.00 MiB" in out
    assert "total capacity of 64.00 MiB" in out and "allocated by PyTorch" in out
    assert "after 1 True" in out and "sum True" in out
