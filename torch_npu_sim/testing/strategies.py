"""Hypothesis strategies for collective programs.

Every choice lists its simplest option first, so a failing program shrinks toward one
all_reduce of a few float32 elements in separately allocated npusim tensors, and what
remains in a shrunk program is what the failure needs."""
from hypothesis import strategies as st

from .programs import (DTYPES, FLOAT_DTYPES, GROUPS, KINDS, LAYOUTS, OPS_BY_DTYPE, PLACEMENTS, PREMUL_FACTORS, WRITABLE_LAYOUTS,
                       Call, Program, element_size)

KIB, MIB = 1 << 10, 1 << 20
FLOATS_AND_COMPLEX = FLOAT_DTYPES + ("complex64",)
PAGE = 4 * KIB
# Bytes around the thresholds that pick an algorithm: 64 KiB (direct all-reduce vs rings),
# 1 MiB (in place vs streamed; a reduce-scatter's or all-gather's whole buffer counts).
BYTE_TARGETS = ("tiny", 64 * KIB, MIB, "1MiB/world", "64KiB/world", "pages", 3 * MIB, 2 * MIB, MIB, 3 * MIB,
                2 * MIB + PAGE, 5 * MIB)
# The in-place paths (npusim memory, >= 1 MiB, the kinds that read peers' memory, the
# in-place group) are where the subtle bugs live: drawn more often than an even split
# would (repeated entries), while everything else still comes up.
IN_PLACE_KINDS = ("all_reduce", "reduce_scatter", "reduce_scatter_tensor", "all_gather", "all_gather_into_tensor",
                  "all_gather_into_tensor_in_place", "broadcast")
KIND_CHOICES = tuple(KINDS) + IN_PLACE_KINDS
PLACEMENT_CHOICES = PLACEMENTS + ("npusim", "npusim")
GROUP_CHOICES = GROUPS + ("in_place", "in_place")
MAX_CALL_BYTES = 40 * MIB  # one rank's tensors for one call (programs.call_bytes)


@st.composite
def element_counts(draw, dtype: str, world: int) -> int:
    size = element_size(dtype)
    target = draw(st.sampled_from(BYTE_TARGETS))
    if target == "tiny":
        return draw(st.integers(1, 64))
    if target == "pages":
        target = PAGE * draw(st.integers(1, 512))
    elif target == "1MiB/world":
        target = MIB // world
    elif target == "64KiB/world":
        target = 64 * KIB // world
    delta = draw(st.sampled_from((0, 1, -1, 3, -5, 257)))  # odd counts straddle the threshold
    return max(1, target // size + delta)


@st.composite
def calls(draw, world: int) -> Call:
    kind = draw(st.sampled_from(KIND_CHOICES))
    reduces, rooted, single = KINDS[kind]
    dtype = draw(st.sampled_from(DTYPES))
    op = draw(st.sampled_from(OPS_BY_DTYPE[dtype])) if reduces else None
    numel = draw(element_counts(dtype, world))
    layout = draw(st.sampled_from(LAYOUTS))
    spread = 2 if layout in ("strided", "padded_views") else 1
    # keep one rank's memory modest: inputs and outputs of up to `world` chunks, twice
    numel = max(1, min(numel, MAX_CALL_BYTES // (4 * world * element_size(dtype) * spread)))
    return Call(
        kind=kind, dtype=dtype, op=op, numel=numel, layout=layout,
        placement=draw(st.sampled_from(PLACEMENT_CHOICES)),
        root=draw(st.integers(0, world - 1)) if rooted else 0,
        repeat=draw(st.sampled_from((1, 2))),
        values=draw(st.sampled_from(("int", "random"))) if dtype in FLOATS_AND_COMPLEX else "int",
        churn=draw(st.sampled_from((0, 3, 6))),
        writer=single and layout in WRITABLE_LAYOUTS and draw(st.booleans()),
        two_groups=single and draw(st.booleans()),
        factor=draw(st.sampled_from(PREMUL_FACTORS)) if op == "PREMUL_SUM" else 2.0,
        seed=draw(st.integers(0, 1 << 16)),
    )


@st.composite
def programs(draw, worlds=(2, 3, 4, 8), max_calls: int = 3) -> Program:
    world = draw(st.sampled_from(tuple(worlds)))
    group = draw(st.sampled_from(GROUP_CHOICES))
    chosen = draw(st.lists(calls(world), min_size=1, max_size=max_calls))
    program = Program(world, group, tuple(chosen))
    program.validate()
    return program
