"""The PyTorch profiler on npusim: device kernels in key_averages(), one Chrome-trace track per
stream, collectives on their own track, simulated durations when simulated timing is on."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "distributed"))
from launcher import assert_clean, launch  # noqa: E402

ACTIVITIES = [ProfilerActivity.CPU, ProfilerActivity.PrivateUse1]


def _export(prof, tmp_path) -> dict:
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    with open(path) as f:
        return json.load(f)


def _kernels(trace: dict) -> list[dict]:
    return [e for e in trace["traceEvents"] if e.get("cat") == "kernel"]


def _track_names(trace: dict) -> dict[tuple[int, int], str]:
    return {(e["pid"], e["tid"]): e["args"]["name"] for e in trace["traceEvents"]
            if e.get("ph") == "M" and e.get("name") == "thread_name"}


def test_key_averages_names_npusim_kernels_with_device_times():
    x = torch.randn(96, 96, device="npusim")
    host = torch.randn(8)
    with profile(activities=ACTIVITIES) as prof:
        for _ in range(3):
            y = x @ x
        host.sub(1)  # CPU-only work is no npusim kernel
        torch.npusim.synchronize()
    averages = prof.key_averages()
    kernels = {e.key: e for e in averages if e.device_type == DeviceType.PrivateUse1}
    assert "aten::mm" in kernels, [e.key for e in averages]
    assert "aten::sub" in {e.key for e in averages} and "aten::sub" not in kernels
    assert kernels["aten::mm"].count == 3
    assert kernels["aten::mm"].self_device_time_total > 0
    # the op that launched them carries their device time
    mm_ops = [e for e in averages if e.key == "aten::mm" and e.device_type == DeviceType.CPU]
    assert mm_ops and mm_ops[0].device_time_total > 0
    assert y.sum().item() == pytest.approx((x.cpu() @ x.cpu()).sum().item(), rel=1e-3)


@pytest.mark.filterwarnings("ignore:Warning. Profiler clears events")  # each cycle on its own is the point
def test_scheduled_profile_reports_only_active_steps():
    x = torch.randn(32, 32, device="npusim")
    cycles = []

    def ready(prof):
        cycles.append({e.key: e.count for e in prof.key_averages() if e.device_type == DeviceType.PrivateUse1})

    plan = torch.profiler.schedule(wait=1, warmup=1, active=2, repeat=2)
    with profile(activities=ACTIVITIES, schedule=plan, on_trace_ready=ready) as prof:
        for _ in range(8):
            x @ x
            torch.npusim.synchronize()
            prof.step()
    assert cycles == [{"aten::mm": 2}, {"aten::mm": 2}]


def test_cpu_only_profile_records_no_npusim_kernels(tmp_path):
    x = torch.randn(32, 32, device="npusim")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        x @ x
        torch.npusim.synchronize()
    assert "aten::mm" in {e.key for e in prof.key_averages()}
    assert _kernels(_export(prof, tmp_path)) == []


def test_trace_has_a_track_per_stream_with_its_kernels(tmp_path):
    x = torch.randn(64, 64, device="npusim")
    side = torch.npusim.Stream()
    main = torch.npusim.current_stream()
    assert side.stream_id != main.stream_id
    with profile(activities=ACTIVITIES) as prof:
        x @ x
        with torch.npusim.stream(side):
            x + x
        torch.npusim.synchronize()
    trace = _export(prof, tmp_path)
    kernels = _kernels(trace)
    tracks = {(k["name"], k["tid"]) for k in kernels}
    assert ("aten::mm", main.stream_id) in tracks, kernels
    assert ("aten::add", side.stream_id) in tracks, kernels
    assert all(k["pid"] == 0 and k["dur"] > 0 for k in kernels)
    names = _track_names(trace)
    assert names[(0, main.stream_id)] == f"npusim stream {main.stream_id}"
    assert names[(0, side.stream_id)] == f"npusim stream {side.stream_id}"
    # each kernel is linked to the CPU op that launched it
    ops = {e["args"]["External id"]: e["name"] for e in trace["traceEvents"]
           if e.get("cat") == "cpu_op" and "External id" in e.get("args", {})}
    assert all(ops[k["args"]["External id"]] == k["name"] for k in kernels)


def test_kernels_of_another_device_are_on_its_tracks(tmp_path):
    if torch.npusim.device_count() < 2:
        pytest.skip("needs two npusim devices (NPUSIM_DEVICE_COUNT)")
    x, w = torch.randn(32, 32, device="npusim:0"), torch.randn(32, 32, device="npusim:1")
    with profile(activities=ACTIVITIES) as prof:
        x @ x
        w @ w  # npusim:0 is current: the op still runs on npusim:1
        torch.npusim.synchronize(0)
        torch.npusim.synchronize(1)
    trace = _export(prof, tmp_path)
    assert sorted(k["pid"] for k in _kernels(trace) if k["name"] == "aten::mm") == [0, 1]
    processes = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"]
                 if e.get("ph") == "M" and e.get("name") == "process_name"}
    assert processes[0] == "npusim 0" and processes[1] == "npusim 1"


def test_collective_appears_on_its_own_track(tmp_path):
    dist.init_process_group("npusim", store=dist.HashStore(), rank=0, world_size=1)
    try:
        x = torch.ones(256, device="npusim")
        with profile(activities=ACTIVITIES) as prof:
            y = x * 2
            dist.all_reduce(y)
            torch.npusim.synchronize()
    finally:
        dist.destroy_process_group()
    assert torch.equal(y.cpu(), torch.full((256,), 2.0))
    trace = _export(prof, tmp_path)
    kernels = {k["name"]: k for k in _kernels(trace)}
    collective, multiply = kernels["c10d::allreduce_"], kernels["aten::mul"]
    assert collective["tid"] != multiply["tid"]
    assert _track_names(trace)[(collective["pid"], collective["tid"])] == "npusim collectives"


def test_simulated_timing_gives_simulated_durations(tmp_path):
    simulation = pytest.importorskip("torch_npu_sim.simulation",
                                     reason="the simulated clock (torch_npu_sim.simulation) is not built in")
    if not hasattr(simulation, "set_simulated_timing"):
        pytest.skip("torch_npu_sim.simulation has no set_simulated_timing")
    x = torch.randn(256, 256, device="npusim")
    stream = torch.npusim.Stream()
    simulation.set_simulated_timing(True)
    try:
        with torch.npusim.stream(stream):
            start, end = torch.npusim.Event(enable_timing=True), torch.npusim.Event(enable_timing=True)
            with profile(activities=ACTIVITIES) as prof:
                start.record()
                x @ x
                end.record()
                torch.npusim.synchronize()
            simulated_ms = start.elapsed_time(end)
    finally:
        simulation.set_simulated_timing(False)
    (kernel,) = [k for k in _kernels(_export(prof, tmp_path)) if k["name"] == "aten::mm"]
    assert simulated_ms > 0
    assert kernel["dur"] == pytest.approx(simulated_ms * 1000, rel=1e-3, abs=1e-3)


TWO_RANK_SCRIPT = """
import json
from torch.profiler import ProfilerActivity, profile
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
x = torch.full((4096,), float(RANK + 1), device="npusim")
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.PrivateUse1]) as prof:
    y = x * 2
    dist.all_reduce(y)
    torch.npusim.synchronize()
path = os.path.join(os.environ["DIST_TEST_DIR"], f"trace{RANK}.json")
prof.export_chrome_trace(path)
trace = json.load(open(path))
kernels = [(e["name"], e["tid"]) for e in trace["traceEvents"] if e.get("cat") == "kernel"]
tracks = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"]
          if e.get("ph") == "M" and e.get("name") == "thread_name" and e["pid"] == 0}
report(kernels=kernels, tracks={str(k): v for k, v in tracks.items()}, total=y[0].item())
dist.destroy_process_group()
"""


def test_two_rank_collective_on_its_own_track():
    outcomes = launch(TWO_RANK_SCRIPT, world=2, timeout=240)
    assert_clean(outcomes)
    for outcome in outcomes:
        assert outcome.result("total") == 6.0  # (1 + 2) * 2
        kernels, tracks = outcome.result("kernels"), outcome.result("tracks")
        (collective_track,) = [tid for name, tid in kernels if name == "c10d::allreduce_"]
        (multiply_track,) = [tid for name, tid in kernels if name == "aten::mul"]
        assert tracks[str(collective_track)] == "npusim collectives"
        assert tracks[str(multiply_track)].startswith("npusim stream ")


LEGACY_SCRIPT = textwrap.dedent("""
    import torch
    x = torch.randn(64, 64, device="npusim")
    with torch.autograd.profiler.profile(use_device="npusim") as prof:
        for _ in range(2):
            x @ x
    (mm,) = [e for e in prof.key_averages() if e.key == "aten::mm"]
    print("DEVICE_US", mm.device_time_total, "CPU_US", mm.cpu_time_total)
""")


def test_legacy_use_device_profile_has_device_times_and_no_warnings():
    env = dict(os.environ, TORCH_SHOW_CPP_STACKTRACES="0")
    done = subprocess.run([sys.executable, "-c", LEGACY_SCRIPT], capture_output=True, text=True,
                          timeout=240, env=env, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not enabled" not in done.stderr, done.stderr[-3000:]
    assert "Exception in RecordFunction callback" not in done.stderr, done.stderr[-3000:]
    fields = done.stdout.split()
    device_us, cpu_us = float(fields[fields.index("DEVICE_US") + 1]), float(fields[fields.index("CPU_US") + 1])
    assert device_us > 0 and cpu_us > 0, done.stdout
