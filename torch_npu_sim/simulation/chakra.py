"""Chakra execution traces (ET) of npusim's simulated timeline, one file per rank.

The messages follow Chakra's schema (github.com/mlcommons/chakra, ``schema/protobuf/et_def.proto``,
package ``ChakraProtoMsg``, version 0.0.4), built here from a descriptor at import, so neither
Chakra nor protoc is needed. A file is a GlobalMetadata message and then one Node per activity,
each preceded by its length as a varint, the framing of Chakra's
``src/third_party/utils/protolib.py``; Chakra's tools and ASTRA-sim's feeder read it.

Activities carry no edges, so they are inferred from the simulated clocks:

* a node depends on the node before it on its stream;
* a node that starts later than that one ended (or, first on its stream, later than the
  recording's first start) was held back by another stream, through an event wait or a host
  synchronization, and depends on the latest launched node that ends exactly when it starts.
  If none does, it gets no extra edge. Only the wait that bound the start can be seen.

Edges go in ``data_deps``: ASTRA-sim's feeder (``src/feeder/et_feeder.cpp``) schedules by those
alone, and ``ctrl_deps`` holds host call trees in traces Chakra converts from PyTorch.

Times are whole microseconds, the schema's unit: a node's start and end are rounded and its
duration is their difference, so back-to-back nodes add up to the rounded span instead of
accumulating rounding errors.
"""
from __future__ import annotations

import graphlib

import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from .trace import Activity

__all__ = ["SCHEMA_VERSION", "AttributeProto", "GlobalMetadata", "Node", "NodeType", "CollectiveCommType",
           "activities_to_chakra", "write_chakra_trace", "read_chakra_trace", "critical_path_us"]

SCHEMA_VERSION = "0.0.4"
_PACKAGE = "ChakraProtoMsg"
_F = descriptor_pb2.FieldDescriptorProto
# AttributeProto's oneof: <type>_val = 3 + 2i and <type>_list = 4 + 2i, in this order
_SCALARS = ("double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
            "fixed32", "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes")
_NODE_TYPES = ("INVALID_NODE", "METADATA_NODE", "MEM_LOAD_NODE", "MEM_STORE_NODE", "COMP_NODE",
               "COMM_SEND_NODE", "COMM_RECV_NODE", "COMM_COLL_NODE")
_COMM_TYPES = ("ALL_REDUCE", "REDUCE", "ALL_GATHER", "GATHER", "SCATTER", "BROADCAST", "ALL_TO_ALL",
               "REDUCE_SCATTER", "REDUCE_SCATTER_BLOCK", "BARRIER")


def _field(name, number, kind, type_name="", repeated=False, oneof=None):
    field = _F(name=name, number=number, type=kind, label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name:
        field.type_name = f".{_PACKAGE}.{type_name}"
    if oneof is not None:
        field.oneof_index = oneof
    return field


def _schema() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(name="et_def.proto", package=_PACKAGE, syntax="proto3")
    attr = f.message_type.add(name="AttributeProto")
    attr.field.extend([_field("name", 1, _F.TYPE_STRING), _field("doc_string", 2, _F.TYPE_STRING)])
    attr.oneof_decl.add(name="value")
    for i, scalar in enumerate(_SCALARS):
        kind, listing = getattr(_F, f"TYPE_{scalar.upper()}"), f"{scalar.capitalize()}List"
        f.message_type.add(name=listing).field.append(_field("values", 1, kind, repeated=True))
        attr.field.extend([_field(f"{scalar}_val", 3 + 2 * i, kind, oneof=0),
                           _field(f"{scalar}_list", 4 + 2 * i, _F.TYPE_MESSAGE, listing, oneof=0)])
    for name, values in (("NodeType", _NODE_TYPES), ("CollectiveCommType", _COMM_TYPES)):
        f.enum_type.add(name=name).value.extend(
            descriptor_pb2.EnumValueDescriptorProto(name=v, number=n) for n, v in enumerate(values))
    f.message_type.add(name="GlobalMetadata").field.extend([
        _field("version", 1, _F.TYPE_STRING), _field("attr", 2, _F.TYPE_MESSAGE, "AttributeProto", repeated=True)])
    f.message_type.add(name="Node").field.extend([
        _field("id", 1, _F.TYPE_UINT64), _field("name", 2, _F.TYPE_STRING),
        _field("type", 3, _F.TYPE_ENUM, "NodeType"),
        _field("ctrl_deps", 4, _F.TYPE_UINT64, repeated=True), _field("data_deps", 5, _F.TYPE_UINT64, repeated=True),
        _field("start_time_micros", 6, _F.TYPE_UINT64), _field("duration_micros", 7, _F.TYPE_UINT64),
        _field("inputs", 8, _F.TYPE_MESSAGE, "IOInfo"), _field("outputs", 9, _F.TYPE_MESSAGE, "IOInfo"),
        _field("attr", 10, _F.TYPE_MESSAGE, "AttributeProto", repeated=True)])
    f.message_type.add(name="IOInfo").field.extend(
        _field(name, n, _F.TYPE_STRING) for n, name in enumerate(("values", "shapes", "types"), 1))
    f.message_type.add(name="Tensor").field.extend(
        [_field(name, n, _F.TYPE_UINT64) for n, name in
         enumerate(("tensor_id", "storage_id", "offset", "num_elem", "elem_bytes"), 1)]
        + [_field("device", 6, _F.TYPE_STRING)])
    return f


# a pool of its own: Chakra's generated et_def_pb2 may be loaded in the same process
_pool = descriptor_pool.DescriptorPool()
_pool.AddSerializedFile(_schema().SerializeToString())
AttributeProto, GlobalMetadata, Node = (message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"{_PACKAGE}.{m}"))
                                        for m in ("AttributeProto", "GlobalMetadata", "Node"))
NodeType = EnumTypeWrapper(_pool.FindEnumTypeByName(f"{_PACKAGE}.NodeType"))
CollectiveCommType = EnumTypeWrapper(_pool.FindEnumTypeByName(f"{_PACKAGE}.CollectiveCommType"))

_ALL_REDUCE_DIRECT_MAX_BYTES = 64 << 10  # kAllReduceDirectMaxBytes, csrc/distributed/algorithms/Algorithms.h


def _us(ns: int) -> int:
    return (ns + 500) // 1000


def _all_reduce_rounds(a: Activity, world: int) -> int:
    """1 when npusim ran the all-reduce direct, 2 when as reduce-scatter then all-gather."""
    peers = world - 1
    if a.bytes / peers > _ALL_REDUCE_DIRECT_MAX_BYTES:
        return 2
    if a.bytes * world / (2 * peers) <= _ALL_REDUCE_DIRECT_MAX_BYTES:
        return 1
    # both readings fit the byte count; the charged time tells them apart (each round pays the link latency)
    one_round = torch.ops.npusim_sim.direct_rounds_ns(world, a.bytes, 1)
    return 1 if a.sim_end_ns - a.sim_start_ns == one_round else 2


def _comm_size(a: Activity, world: int) -> int:
    """The bytes of the collective's input on this rank, as Chakra's PyTorch converter counts them.

    A collective's activity carries the bytes the rank sent over its links
    (csrc/distributed/SimCost.cpp), so they are scaled back by the algorithm's fan-out.
    """
    peers = world - 1
    if peers <= 0:
        return 0  # a group of one sends nothing: the size is not recorded
    if a.name in ("reduce_scatter", "scatter", "all_to_all"):
        return round(a.bytes * world / peers)  # the input is `world` slices, one of which stays
    if a.name == "all_reduce" and _all_reduce_rounds(a, world) == 2:
        return round(a.bytes * world / (2 * peers))
    return round(a.bytes / peers)  # the whole input to every peer


def _attributes(a: Activity, world: int) -> tuple[int, list]:
    common = [AttributeProto(name="is_cpu_op", bool_val=False), AttributeProto(name="stream", int64_val=a.stream_id)]
    if a.kind != "collective":
        # copies and fills are COMP_NODEs too: MEM_LOAD/MEM_STORE_NODE are remote-memory accesses that
        # ASTRA-sim prices itself, while these are local work npusim has already timed
        return NodeType.COMP_NODE, common + [AttributeProto(name="num_ops", int64_val=round(a.flops)),
                                             AttributeProto(name="tensor_size", uint64_val=round(a.bytes))]
    comm_type = a.name.upper()
    if comm_type not in _COMM_TYPES:
        raise ValueError(f"no Chakra collective type for the npusim collective {a.name!r}")
    return NodeType.COMM_COLL_NODE, common + [
        AttributeProto(name="comm_type", int64_val=CollectiveCommType.Value(comm_type)),
        AttributeProto(name="comm_size", int64_val=_comm_size(a, world))]


def _world_size(world_size: int | None) -> int:
    if world_size is not None:
        return world_size
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def activities_to_chakra(activities: list[Activity], world_size: int | None = None) -> list:
    """One Node per activity of one device, ids in launch order, with edges inferred from the clocks.

    world_size (default: the default process group's) recovers the collectives' sizes.
    """
    if len({a.device for a in activities}) > 1:
        raise ValueError("a Chakra trace describes one device: pass the activities of one device")
    world = _world_size(world_size)
    first_start = min((a.sim_start_ns for a in activities), default=0)
    last_on_stream: dict[int, int] = {}  # stream id -> its latest node
    last_ending_at: dict[int, int] = {}  # end in ns -> the latest launched node that ends then
    nodes = []
    for i, a in enumerate(activities):
        kind, attrs = _attributes(a, world)
        start, end = _us(a.sim_start_ns), _us(a.sim_end_ns)
        node = Node(id=i, name=a.name, type=kind, start_time_micros=start, duration_micros=end - start, attr=attrs)
        before = last_on_stream.get(a.stream_id)
        if before is not None:
            node.data_deps.append(before)
        ready = activities[before].sim_end_ns if before is not None else first_start
        if a.sim_start_ns > ready and a.sim_start_ns in last_ending_at:
            node.data_deps.append(last_ending_at[a.sim_start_ns])
        last_on_stream[a.stream_id] = i
        last_ending_at[a.sim_end_ns] = i
        nodes.append(node)
    return nodes


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def write_chakra_trace(path: str, activities: list[Activity], rank: int = 0, world_size: int | None = None) -> str:
    """Writes the activities of one rank's device as a Chakra ET file (Chakra names them ``<name>.<rank>.et``)."""
    metadata = GlobalMetadata(version=SCHEMA_VERSION, attr=[
        AttributeProto(name="rank", int64_val=rank),
        AttributeProto(name="source", string_val="npusim simulated clock")])
    with open(path, "wb") as f:
        for message in (metadata, *activities_to_chakra(activities, world_size)):
            data = message.SerializeToString()
            f.write(_varint(len(data)) + data)
    return path


def read_chakra_trace(path: str) -> tuple:
    """(GlobalMetadata, [Node, ...]) of a Chakra ET file."""
    with open(path, "rb") as f:
        data = f.read()
    messages, pos = [], 0
    while pos < len(data):
        size = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        message = Node() if messages else GlobalMetadata()
        message.ParseFromString(data[pos:pos + size])
        messages.append(message)
        pos += size
    if not messages:
        raise ValueError(f"{path}: no Chakra GlobalMetadata")
    return messages[0], messages[1:]


def critical_path_us(nodes: list) -> int:
    """How long the graph takes when each node starts as soon as its data_deps have ended.

    Roots start at 0, so idle time the edges do not explain (a stream the host left idle)
    is not counted; edges to nodes outside ``nodes`` are ignored.
    """
    by_id = {n.id: n for n in nodes}
    deps = {n.id: [d for d in n.data_deps if d in by_id] for n in nodes}
    end: dict[int, int] = {}
    for i in graphlib.TopologicalSorter(deps).static_order():
        end[i] = max((end[d] for d in deps[i]), default=0) + by_id[i].duration_micros
    return max(end.values(), default=0)
