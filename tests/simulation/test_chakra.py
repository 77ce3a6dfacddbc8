"""Chakra execution traces of the simulated timeline: the file's wire format against Chakra's
et_def.proto field numbers, dependencies inferred from the stream clocks, the graph's critical
path against the simulated span, and collectives of real ranks with their Chakra types and sizes."""
import os
import sys

import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

pytest.importorskip("google.protobuf")

from torch_npu_sim import simulation as sim  # noqa: E402
from torch_npu_sim.simulation import chakra  # noqa: E402
from torch_npu_sim.simulation.trace import Activity, record_activities  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "distributed"))
from launcher import assert_clean, describe, launch  # noqa: E402

# numbers from Chakra's schema/protobuf/et_def.proto
COMP_NODE, COMM_COLL_NODE = 4, 7
ALL_REDUCE, ALL_GATHER, BROADCAST, ALL_TO_ALL, REDUCE_SCATTER = 0, 2, 5, 6, 7
SIDE = 256  # the largest matrix side the random programs use


@pytest.fixture(scope="module")
def h100():
    previous = sim.get_chip()
    sim.set_chip("h100-sxm5-80gb")
    sim.enable()
    streams = [torch.npusim.current_stream(), torch.npusim.Stream(), torch.npusim.Stream()]
    operands = torch.randn(SIDE, SIDE, device="npusim"), torch.randn(SIDE, SIDE, device="npusim")
    yield streams, operands
    torch.npusim.synchronize()
    sim.disable()
    sim.set_chip(previous)
    sim.reset()


def _record(program):
    """Runs the program from simulated time 0 and returns its activities."""
    torch.npusim.synchronize()
    sim.reset()
    with record_activities() as rec:
        program()
    torch.npusim.synchronize()
    return rec.activities


def _span_us(activities) -> float:
    return (max(a.sim_end_ns for a in activities) - min(a.sim_start_ns for a in activities)) / 1e3


def _attrs(node) -> dict:
    return {a.name: getattr(a, a.WhichOneof("value")) for a in node.attr}


# --- an independent reader of the protobuf wire format, by field number -------------------------

def _varint(buf, pos):
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _frames(buf):
    pos = 0
    while pos < len(buf):
        size, pos = _varint(buf, pos)
        yield buf[pos:pos + size]
        pos += size


def _fields(buf) -> dict:
    """field number -> the raw values (varints as ints, length-delimited as bytes)."""
    fields, pos = {}, 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        if key & 7 == 0:
            value, pos = _varint(buf, pos)
        else:
            assert key & 7 == 2, f"unexpected wire type in field {key >> 3}"
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        fields.setdefault(key >> 3, []).append(value)
    return fields


def _packed(buf) -> list:
    values, pos = [], 0
    while pos < len(buf):
        value, pos = _varint(buf, pos)
        values.append(value)
    return values


def test_the_file_carries_chakras_field_numbers(h100, tmp_path):
    (main, side, _), (a, b) = h100

    def program():
        y = a @ b
        done = torch.npusim.Event()
        done.record(main)
        side.wait_event(done)
        with torch.npusim.stream(side):
            y.relu()

    activities = _record(program)
    path = chakra.write_chakra_trace(str(tmp_path / "npusim.3.et"), activities, rank=3)
    with open(path, "rb") as f:
        metadata, *nodes = [_fields(frame) for frame in _frames(f.read())]
    assert metadata[1] == [b"0.0.4"]  # GlobalMetadata.version
    rank_attr = _fields(metadata[2][0])  # GlobalMetadata.attr
    assert rank_attr[1] == [b"rank"] and rank_attr[9] == [3]  # AttributeProto.name, int64_val
    assert len(nodes) == 2
    mm, relu = nodes
    assert mm.get(1) is None and relu[1] == [1]  # Node.id: proto3 leaves 0 out
    assert mm[2] == [b"aten::mm"] and relu[2] == [b"aten::relu"]  # Node.name
    assert mm[3] == relu[3] == [COMP_NODE]  # Node.type
    assert _packed(relu[5][0]) == [0]  # Node.data_deps: the side stream waited for the matmul
    assert 4 not in relu  # no ctrl_deps
    for fields, act in zip(nodes, activities):
        assert abs(fields[7][0] * 1000 - (act.sim_end_ns - act.sim_start_ns)) < 1000  # Node.duration_micros
        attrs = {_fields(raw)[1][0]: _fields(raw) for raw in fields[10]}  # Node.attr by name
        assert attrs[b"is_cpu_op"].get(27, [0]) == [0]  # bool_val false
        assert attrs[b"num_ops"][9] == [round(act.flops)]  # int64_val
        assert attrs[b"tensor_size"][13] == [round(act.bytes)]  # uint64_val


def test_event_waits_become_edges_and_the_critical_path_is_the_span(h100):
    (main, side, _), (a, b) = h100

    def program():
        y = (a @ b).relu()  # 0, 1 on main
        ready = torch.npusim.Event()
        ready.record(main)
        with torch.npusim.stream(side):
            x = a + 1  # 2: side's work before the wait overlaps main's
            side.wait_event(ready)
            z = y @ x  # 3: released by 1
            back = torch.npusim.Event()
            back.record(side)
        main.wait_event(back)
        (z + y).sum()  # 4 (the add): released by 3; 5 (the sum)

    activities = _record(program)
    nodes = chakra.activities_to_chakra(activities, world_size=1)
    assert [n.name for n in nodes] == ["aten::mm", "aten::relu", "aten::add", "aten::mm", "aten::add", "aten::sum"]
    assert [list(n.data_deps) for n in nodes] == [[], [0], [], [2, 1], [1, 3], [4]]
    assert abs(chakra.critical_path_us(nodes) - _span_us(activities)) < 1


def test_a_host_synchronization_becomes_an_edge(h100):
    (main, side, _), (a, b) = h100

    def program():
        a @ b
        torch.npusim.synchronize()  # the host waits, so side's first kernel starts after the matmul
        with torch.npusim.stream(side):
            a + b

    activities = _record(program)
    assert activities[1].sim_start_ns == activities[0].sim_end_ns > 0
    nodes = chakra.activities_to_chakra(activities, world_size=1)
    assert list(nodes[1].data_deps) == [0]
    assert abs(chakra.critical_path_us(nodes) - _span_us(activities)) < 1


dims = st.integers(1, SIDE)
kernels = st.one_of(st.tuples(st.just("mm"), dims, dims, dims),
                    st.tuples(st.sampled_from(["relu", "add", "mul"]), dims, dims))
# a kernel on a stream, launched after that stream waits for events just recorded on the listed streams
ops = st.tuples(st.integers(0, 2), st.lists(st.integers(0, 2), max_size=2), kernels)


@settings(max_examples=40, deadline=None)
@given(streams_used=st.integers(1, 3), program=st.lists(ops, max_size=16))
def test_random_programs_export_faithful_graphs(h100, tmp_path_factory, streams_used, program):
    streams, (a, b) = h100
    streams = streams[:streams_used]

    def run():
        for s, waits_on, (op, *shape) in program:
            stream = streams[s % streams_used]
            for other in waits_on:
                event = torch.npusim.Event()
                event.record(streams[other % streams_used])
                stream.wait_event(event)
            with torch.npusim.stream(stream):
                if op == "mm":
                    m, k, n = shape
                    a[:m, :k] @ b[:k, :n]
                else:
                    m, n = shape
                    x = a[:m, :n]
                    x.relu() if op == "relu" else getattr(torch, op)(x, b[:m, :n])

    activities = _record(run)
    path = str(tmp_path_factory.mktemp("chakra") / "npusim.0.et")
    chakra.write_chakra_trace(path, activities, rank=0, world_size=1)
    metadata, nodes = chakra.read_chakra_trace(path)
    # (a) the file reads back as what was exported
    assert metadata.version == chakra.SCHEMA_VERSION
    assert nodes == chakra.activities_to_chakra(activities, world_size=1)
    assert len(nodes) == len(activities) == len(program)
    if not nodes:
        return
    # (b) the dependency graph alone takes as long as the simulated run
    assert abs(chakra.critical_path_us(nodes) - _span_us(activities)) < 1
    last_on_stream = {}
    for node, act in zip(nodes, activities):
        # (c) the node is the activity: kind, timing, work
        assert node.type == COMP_NODE and node.name == act.name
        assert abs(node.start_time_micros * 1000 - act.sim_start_ns) <= 500
        assert abs(node.duration_micros * 1000 - (act.sim_end_ns - act.sim_start_ns)) < 1000
        attrs = _attrs(node)
        assert attrs == {"is_cpu_op": False, "stream": act.stream_id, "num_ops": round(act.flops),
                         "tensor_size": round(act.bytes)}
        # edges: the stream's previous node first, then at most the node whose end released this one
        deps = list(node.data_deps)
        on_stream = [last_on_stream[act.stream_id]] if act.stream_id in last_on_stream else []
        released_by = deps[len(on_stream):]
        assert deps[:len(on_stream)] == on_stream and len(released_by) <= 1
        for d in released_by:
            assert d < node.id and activities[d].sim_end_ns == act.sim_start_ns
            assert activities[d].stream_id != act.stream_id
            event("a node released by another stream")
        last_on_stream[act.stream_id] = node.id


def test_refuses_what_it_cannot_describe():
    def activity(name, kind="kernel", device=0):
        return Activity(name, kind, device, 1, 0, 1000, 0.0, 8.0)

    with pytest.raises(ValueError, match="one device"):
        chakra.activities_to_chakra([activity("aten::mm"), activity("aten::mm", device=1)])
    with pytest.raises(ValueError, match="send/recv"):
        chakra.activities_to_chakra([activity("send/recv", "collective")], world_size=2)
    assert chakra.critical_path_us([]) == 0


RANK_CODE = """
from torch_npu_sim import simulation as sim
from torch_npu_sim.simulation import chakra
from torch_npu_sim.simulation.trace import record_activities
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
device = torch.device("npusim", RANK)
torch.npusim.set_device(device)
sim.set_chip("h100-sxm5-80gb"); sim.enable()
# all_reduce: direct, two ambiguous sizes (either algorithm fits the bytes sent) and reduce-scatter + all-gather
reduced = [torch.ones(n, device=device) for n in (1000, 12500, 20000, 1 << 17)]
chunk = torch.ones(1000, device=device)
gathered = torch.empty(1000 * WORLD, device=device)
scattered = torch.empty(1000, device=device)
exchanged = torch.empty(1000 * WORLD, device=device)
side = torch.npusim.Stream()
torch.npusim.synchronize(); sim.reset()
with record_activities() as rec:
    for t in reduced:
        dist.all_reduce(t)
    dist.all_gather_into_tensor(gathered, chunk)
    y = gathered @ gathered  # computes while the side stream communicates
    with torch.npusim.stream(side):
        side.wait_stream(torch.npusim.current_stream(device))
        dist.reduce_scatter_tensor(scattered, gathered)
        dist.all_to_all_single(exchanged, gathered)
    torch.npusim.current_stream(device).wait_stream(side)
    dist.broadcast(scattered + y, 0)
    torch.npusim.synchronize()
chakra.write_chakra_trace(os.path.join(os.environ["CHAKRA_DIR"], f"npusim.{RANK}.et"), rec.activities, rank=RANK)
report(span_ns=max(a.sim_end_ns for a in rec.activities) - min(a.sim_start_ns for a in rec.activities))
dist.destroy_process_group()
"""


def test_ranks_write_their_collectives(tmp_path):
    world = 3  # sizes are recovered from the bytes sent, which scale with world - 1 and world
    outcomes = launch(RANK_CODE, world, env={"CHAKRA_DIR": str(tmp_path)}, timeout=120)
    assert_clean(outcomes)
    f32 = 4
    expected = [(ALL_REDUCE, n * f32) for n in (1000, 12500, 20000, 1 << 17)] + [
        (ALL_GATHER, 1000 * f32), (REDUCE_SCATTER, 1000 * world * f32), (ALL_TO_ALL, 1000 * world * f32),
        (BROADCAST, 1000 * f32)]
    assert sorted(os.listdir(tmp_path)) == [f"npusim.{r}.et" for r in range(world)]
    for o in outcomes:
        metadata, nodes = chakra.read_chakra_trace(str(tmp_path / f"npusim.{o.rank}.et"))
        assert _attrs(metadata)["rank"] == o.rank
        colls = [n for n in nodes if n.type == COMM_COLL_NODE]
        got = [(_attrs(n)["comm_type"], _attrs(n)["comm_size"]) for n in colls]
        assert got == expected, describe(outcomes)
        assert all(_attrs(n)["is_cpu_op"] is False for n in colls)
        assert abs(chakra.critical_path_us(nodes) - o.result("span_ns") / 1e3) < 1
