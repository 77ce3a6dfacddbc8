"""Collective costs across nodes: chips per node and each chip's network link (chip spec fields)."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import torch

from torch_npu_sim import simulation as sim
from torch_npu_sim.simulation import chips


@pytest.fixture
def h100():
    previous = sim.get_chip()
    sim.set_chip("h100-sxm5-80gb")
    yield chips.PRESETS["h100-sxm5-80gb"]
    sim.set_chip(previous)


def expected_ns(spec, world, sent, rounds):
    """The model written out independently: inside a node one switch hop; to other nodes, the NIC."""
    peers = world - 1
    in_node = min(world, spec.ranks_per_node) if spec.ranks_per_node else world
    inside = spec.link_latency_s + sent * (in_node - 1) / peers / spec.link_bandwidth
    round_s = inside
    if world > in_node:
        round_s = max(inside, spec.node_latency_s + sent * (world - in_node) / peers / spec.node_bandwidth)
    return round(rounds * round_s * 1e9)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(world=st.integers(2, 64), sent=st.floats(0, 1e10), rounds=st.integers(1, 3))
def test_rounds_cost_inside_and_across_nodes(h100, world, sent, rounds):
    got = torch.ops.npusim_sim.direct_rounds_ns(world, sent, rounds)
    assert got == pytest.approx(expected_ns(h100, world, sent, rounds), abs=rounds)


def test_crossing_nodes_is_slower_and_a_one_node_spec_is_unchanged(h100):
    per_peer = 64e6
    eight = torch.ops.npusim_sim.direct_rounds_ns(8, per_peer * 7, 1)
    sixteen = torch.ops.npusim_sim.direct_rounds_ns(16, per_peer * 15, 1)
    assert sixteen > 4 * eight  # the NIC carries 8/15 of the bytes at 1/9 of NVLink's bandwidth
    one_node = sim.set_chip({**h100.to_dict(), "name": "one-node", "ranks_per_node": 0})
    assert torch.ops.npusim_sim.direct_rounds_ns(16, per_peer * 15, 1) == expected_ns(one_node, 16, per_peer * 15, 1)


def test_bad_node_fields_are_named():
    spec = chips.PRESETS["h100-sxm5-80gb"].to_dict()
    with pytest.raises(ValueError, match="ranks_per_node"):
        chips.from_dict({**spec, "ranks_per_node": -1})
    with pytest.raises(ValueError, match="node_bandwidth"):
        chips.from_dict({**spec, "node_bandwidth": 0})
