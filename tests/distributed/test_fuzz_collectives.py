"""Randomized differential testing of the collectives (torch_npu_sim/testing/fuzz.py):
hypothesis programs with a fixed seed and budget, run on long-lived rank pools against
gloo and the streamed path, plus the programs that once gave wrong results, kept as
regression cases. Longer runs: ``python -m torch_npu_sim.testing.fuzz --minutes N``."""
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from torch_npu_sim.testing.fuzz import ProgramFailed, check_program
from torch_npu_sim.testing.pool import Pools
from torch_npu_sim.testing.programs import Call, Program
from torch_npu_sim.testing.strategies import programs

MI = 1 << 20


@pytest.fixture(scope="module")
def pools():
    with Pools() as p:
        yield p


def random_programs(world: int, examples: int):
    """A test of `examples` hypothesis programs at `world` ranks. Fixed seed and budget:
    the same programs every run, about two minutes in all on two cores. No shrinking here
    (it can take minutes); the report names the failing program, and the fuzz command
    shrinks it."""

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None, print_blob=False,
              phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck),
              report_multiple_bugs=False)
    @given(program=programs(worlds=(world,), max_calls=2))
    def test(pools, program):
        check_program(pools, program)

    return test


# one world size per test: Pools keeps one pool alive, so each starts once
test_random_programs_at_2_ranks = random_programs(2, 60)
test_random_programs_at_3_ranks = random_programs(3, 45)
test_random_programs_at_4_ranks = random_programs(4, 35)
test_random_programs_at_8_ranks = random_programs(8, 8)  # eight ranks on two cores: slow calls


def test_a_wrong_result_is_caught():
    # the oracle itself: a payload byte flipped on the wire (fault injection) must fail
    # the program, naming the call and the element
    program = Program(2, "in_place", (Call("all_reduce", "int32", "SUM", numel=1000, repeat=2),))
    faults = {"NPUSIM_ALLOW_FAULTS": "1", "NPUSIM_FAULTS": "rank=1,op=all_reduce,call=3,action=corrupt"}
    with Pools(env=faults) as pools:
        with pytest.raises(ProgramFailed, match=r"call 0 \(all_reduce\) iteration 1: streamed vs gloo .* differ"):
            check_program(pools, program)


REGRESSIONS = {
    # list-form reduce_scatter whose inputs are separate allocations that happen to lie
    # back to back: taken for one shareable buffer; wrong on the second iteration
    "reduce_scatter_adjacent_allocations": Program(2, "in_place", (
        Call("reduce_scatter", "float32", "SUM", numel=MI, layout="separate", repeat=2),)),
    # list-form reduce_scatter of strided int64 views: the contiguous copies staged for
    # them are separate allocations too
    "reduce_scatter_strided_int64": Program(3, "in_place", (
        Call("reduce_scatter", "int64", "SUM", numel=2 * MI, layout="strided"),)),
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regressions(pools, name):
    check_program(pools, REGRESSIONS[name])
