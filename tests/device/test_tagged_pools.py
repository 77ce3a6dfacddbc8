"""Tagged pools that sleep (give device memory back) and wake up at the same addresses:
offloaded pools get their contents back, the others read as zeros, and the capacity they
free is really free (another allocation fits; waking up without room is an OOM)."""
import pytest
import torch

MiB = 1 << 20

SCRIPT = """
import torch
MiB = 1 << 20
pools = torch.npusim.pools.TaggedPools()
with pools.use_memory_pool("weights"):
    weights = torch.arange(16 * MiB // 4, dtype=torch.float32, device="npusim")
    small = torch.full((100,), 7.0, device="npusim")  # a block below a page
with pools.use_memory_pool("runtime"):
    with pools.use_memory_pool("kv_cache"):  # scopes nest: the innermost wins
        kv = torch.full((8 * MiB // 4,), 3.0, device="npusim")
    scratch = torch.ones(4 * MiB // 4, device="npusim")
outside = torch.ones(10, device="npusim")
ptrs = [t.data_ptr() for t in (weights, small, kv, scratch)]
free0, total = torch.npusim.mem_get_info()
freed = pools.sleep(offload_tags=("weights",))
free1, _ = torch.npusim.mem_get_info()
assert freed >= 28 * MiB and free1 - free0 == freed, (freed, free1 - free0)
assert pools.get_current_usage() == freed
other = torch.empty((total - (total - free1)) // 2, dtype=torch.uint8, device="npusim")  # the room is real
del other
torch.npusim.empty_cache()  # the pools' blocks stay: they are retained
pools.wake_up()
assert [t.data_ptr() for t in (weights, small, kv, scratch)] == ptrs
assert torch.equal(weights.cpu(), torch.arange(16 * MiB // 4, dtype=torch.float32))
assert torch.equal(small.cpu(), torch.full((100,), 7.0))
assert kv.abs().sum().item() == 0 and scratch.abs().sum().item() == 0  # not offloaded: dropped
torch.npusim.empty_cache()  # the checks' temporaries
assert torch.npusim.mem_get_info()[0] == free0
# waking up needs the room back
pools.sleep()
hog = torch.empty(torch.npusim.mem_get_info()[0] - MiB, dtype=torch.uint8, device="npusim")
try:
    pools.wake_up(["weights"])
    raise SystemExit("woke up without room")
except torch.OutOfMemoryError as e:
    assert "waking up" in str(e), e
del hog
torch.npusim.empty_cache()
pools.wake_up()
print("OK")
"""


@pytest.mark.parametrize("protected", [False, True])
def test_pools_sleep_and_wake_up(fresh_python, protected):
    env = {"NPUSIM_DEVICE_MEMORY": "256MiB", "NPUSIM_DEVICE_COUNT": "1"}
    if protected:
        env["NPUSIM_PROTECT_MEMORY"] = "1"
    result = fresh_python(SCRIPT, env=env, timeout=300)
    assert result.returncode == 0 and "OK" in result.stdout, (result.stdout[-2000:], result.stderr[-4000:])
