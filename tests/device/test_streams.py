"""Streams and events: torch.npusim API, generic torch.Stream/Event, torch.accelerator."""
import pytest
import torch


def test_stream_objects_and_priorities():
    s = torch.npusim.Stream()
    hi = torch.npusim.Stream(priority=-1)
    assert isinstance(s, torch.Stream) and s.device == torch.device("npusim", 0)
    assert s.priority == 0 and hi.priority == -1
    assert s != torch.npusim.default_stream()
    assert torch.npusim.Stream(device=3).device_index == 3
    assert torch.npusim.default_stream().stream_id == 0


def test_current_stream_context_and_set_stream():
    default = torch.npusim.current_stream()
    s = torch.npusim.Stream()
    with torch.npusim.stream(s):
        assert torch.npusim.current_stream() == s
        assert torch.accelerator.current_stream() == s
        x = torch.ones(8, device="npusim") * 3  # work queued on s
    assert torch.npusim.current_stream() == default
    torch.npusim.set_stream(s)
    try:
        assert torch.npusim.current_stream() == s
    finally:
        torch.npusim.set_stream(default)
    assert x.sum().item() == 24


def test_stream_on_other_device_switches_device_in_context():
    s = torch.npusim.Stream(device=2)
    with torch.npusim.stream(s):
        assert torch.npusim.current_device() == 2
        assert torch.npusim.current_stream(2) == s
    assert torch.npusim.current_device() == 0
    assert torch.npusim.current_stream(2).stream_id == 0


def test_wait_stream_wait_event_record_event_query_synchronize():
    s1, s2 = torch.npusim.Stream(), torch.npusim.Stream()
    with torch.npusim.stream(s1):
        y = torch.arange(10.0, device="npusim") * 2
    s2.wait_stream(s1)
    ev = s1.record_event()
    s2.wait_event(ev)
    assert ev.query() and s1.query() and s2.query()
    s2.synchronize()
    ev.synchronize()
    with torch.npusim.stream(s2):
        assert (y + 1).sum().item() == 100.0


def test_event_timing():
    start, end = torch.npusim.Event(enable_timing=True), torch.npusim.Event(enable_timing=True)
    assert isinstance(start, torch.npusim.Event) and isinstance(start, torch.Event)
    start.record()
    a = torch.randn(256, 256, device="npusim")
    for _ in range(5):
        a = a @ a / 256
    end.record()
    end.synchronize()
    ms = start.elapsed_time(end)
    assert ms > 0


def test_invalid_event_use_is_a_clear_error():
    untimed_a, untimed_b = torch.npusim.Event(), torch.npusim.Event()
    untimed_a.record()
    untimed_b.record()
    with pytest.raises((RuntimeError, ValueError), match="enable_timing=True"):
        untimed_a.elapsed_time(untimed_b)
    a, b = torch.npusim.Event(enable_timing=True), torch.npusim.Event(enable_timing=True)
    a.record()
    with pytest.raises((RuntimeError, ValueError), match="recorded"):
        a.elapsed_time(b)
    with pytest.raises(ValueError, match="interprocess"):
        torch.npusim.Event(interprocess=True)


def test_generic_torch_stream_and_event_on_npusim():
    s = torch.Stream(device="npusim:1")
    e = torch.Event(device="npusim:1", enable_timing=True)
    e2 = torch.Event(device="npusim:1", enable_timing=True)
    e.record(s)
    e2.record(s)
    assert e.query() and e2.elapsed_time(e) <= 0 <= e.elapsed_time(e2)
    with torch.npusim.device(1):
        torch.accelerator.set_stream(s)
        assert torch.accelerator.current_stream() == s
        torch.accelerator.synchronize()
        torch.accelerator.set_stream(torch.npusim.default_stream(1))


def test_stream_of_wrong_device_type_is_rejected():
    with pytest.raises(ValueError, match="npusim stream"):
        torch.npusim.set_stream(torch.Stream(device="cpu"))


def test_record_stream_delays_reuse_until_stream_work_is_done():
    s = torch.npusim.Stream()
    x = torch.empty(1 << 20, dtype=torch.uint8, device="npusim")
    ptr = x.data_ptr()
    x.record_stream(s)
    del x
    # the block becomes reusable once the event recorded on `s` has completed
    s.synchronize()
    y = torch.empty(1 << 20, dtype=torch.uint8, device="npusim")
    assert y.data_ptr() == ptr
