"""The caching allocator against a model: random programs of allocations (small, large,
shareable), frees, writes, side-stream use, cache emptying, span sharing and forks, each
step checked against what a simple model says must hold. Live blocks never overlap, no
written byte is lost, the statistics are exact, and a span is shareable exactly when it
lies inside one live shareable block (sharing is on for the whole test, as in a process
that has joined a group: every block of at least 1 MiB is made shareable)."""
import os

import pytest
import torch
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import torch_npu_sim._C as C

MiB = 1 << 20
SIZES = st.sampled_from([1, 511, 512, 4096, 65536 + 3, MiB - 1, MiB, MiB + 4097, 3 * MiB + 5])
DEVICE = torch.device("npusim", 1)  # a device of its own: other tests' blocks stay out of the counts


def stat(key):
    return torch.npusim.memory_stats(DEVICE).get(key, 0)


class AllocatorModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        torch.npusim.synchronize(DEVICE)
        torch.npusim.empty_cache()
        self.base_requested = stat("requested_bytes.all.current")
        self.base_allocations = stat("allocation.all.current")
        self.live = {}  # id -> (tensor, value written, shareable)
        self.next_id = 0
        self.side = torch.npusim.Stream(DEVICE)

    def _new(self, nbytes, stream=None):
        with torch.npusim.stream(stream or torch.npusim.current_stream(DEVICE)):
            t = torch.empty(nbytes, dtype=torch.uint8, device=DEVICE)
        value = (self.next_id * 37 + 11) % 251
        t.fill_(value)
        rounded = -(-nbytes // 512) * 512  # the cache's block size, or a larger cached block
        self.live[self.next_id] = (t, value, rounded >= MiB)
        self.next_id += 1
        return t

    @rule(nbytes=SIZES)
    def allocate(self, nbytes):
        self._new(nbytes)

    @rule(nbytes=SIZES)
    def allocate_on_a_side_stream_and_use_it_elsewhere(self, nbytes):
        t = self._new(nbytes, self.side)
        t.record_stream(torch.npusim.current_stream(DEVICE))

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def free(self, data):
        key = data.draw(st.sampled_from(sorted(self.live)))
        del self.live[key]

    @precondition(lambda self: self.live)
    @rule(data=st.data(), value=st.integers(0, 250))
    def write(self, data, value):
        key = data.draw(st.sampled_from(sorted(self.live)))
        t, _, shareable = self.live[key]
        t.fill_(value)
        self.live[key] = (t, value, shareable)

    @rule()
    def empty_cache(self):
        torch.npusim.empty_cache()

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def share_spans(self, data):
        key = data.draw(st.sampled_from(sorted(self.live)))
        t, _, shareable = self.live[key]
        ptr, n = t.data_ptr(), t.numel()
        # the whole tensor, an inner part: shareable exactly when its block is
        assert C._sharing_span_shareable(ptr, n) == shareable
        assert C._sharing_span_shareable(ptr + n // 3, n - n // 3) == shareable
        # a span reaching past the block (its reserved size is under 9/8 of the request
        # plus rounding) is never shareable
        assert not C._sharing_span_shareable(ptr, n + n // 4 + 4096)
        # two live tensors side by side in memory are never one span
        for other, _, _ in self.live.values():
            if other.data_ptr() == ptr + n:
                assert not C._sharing_span_shareable(ptr, n + other.numel())

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def fork_sees_a_snapshot(self, data):
        key = data.draw(st.sampled_from(sorted(self.live)))
        t, value, shareable = self.live[key]
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            os.read(r, 1)  # the parent has overwritten t by now
            os._exit(0 if bool((t == value).all()) else 1)
        os.close(r)
        t.fill_((value + 1) % 251)
        os.write(w, b"x")
        os.close(w)
        _, status = os.waitpid(pid, 0)
        assert status == 0, "the forked child saw its parent's later write"
        self.live[key] = (t, (value + 1) % 251, shareable)

    @invariant()
    def live_blocks_hold_their_bytes_and_never_overlap(self):
        spans = sorted((t.data_ptr(), t.data_ptr() + t.numel()) for t, _, _ in self.live.values())
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end <= start, "two live blocks overlap"
        for t, value, _ in self.live.values():
            assert bool((t == value).all()), "a written byte was lost"

    @invariant()
    def statistics_are_exact(self):
        assert stat("requested_bytes.all.current") - self.base_requested == sum(t.numel() for t, _, _ in self.live.values())
        assert stat("allocation.all.current") - self.base_allocations == len(self.live)
        assert stat("allocated_bytes.all.current") <= stat("reserved_bytes.all.current")

    def teardown(self):
        self.live.clear()
        torch.npusim.synchronize(DEVICE)
        torch.npusim.empty_cache()


@pytest.mark.skipif(torch.npusim.device_count() < 2, reason="needs a second npusim device")
def test_allocator_against_its_model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # GNU OpenMP's pool does not survive fork
    C._sharing_enable()  # one way, as when a process joins a group
    torch.npusim.empty_cache()  # blocks made before are gone: every new large block is shareable
    runner = AllocatorModel.TestCase
    runner.settings = settings(max_examples=40, stateful_step_count=25, derandomize=True, deadline=None,
                               suppress_health_check=[HealthCheck.too_slow])
    try:
        runner().runTest()
    finally:
        torch.set_num_threads(threads)  # later tests in this process keep their threads
