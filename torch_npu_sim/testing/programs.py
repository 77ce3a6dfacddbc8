"""Collective programs: what the fuzzer generates, the rank workers run and a failure
report prints. A program is plain data (JSON round-trip), so any failing one can be
replayed exactly: every input value is derived from the call's seed, the rank and the
iteration, never from state a previous program left behind."""
import json
from dataclasses import asdict, dataclass, field, replace

FLOAT_DTYPES = ("float32", "float64", "bfloat16", "float16")
INT_DTYPES = ("int8", "int32", "int64", "uint8")
DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool", "complex64")

# torch.distributed rejects MIN/MAX/PRODUCT and the bitwise ops on complex tensors;
# bitwise ops are undefined on floats and PREMUL_SUM on integers (npusim and NCCL alike).
OPS_BY_DTYPE = {
    **{d: ("SUM", "AVG", "PRODUCT", "MIN", "MAX", "PREMUL_SUM") for d in FLOAT_DTYPES},
    **{d: ("SUM", "PRODUCT", "MIN", "MAX", "BAND", "BOR", "BXOR") for d in INT_DTYPES},
    "bool": ("SUM", "PRODUCT", "MIN", "MAX", "BAND", "BOR", "BXOR"),
    "complex64": ("SUM", "AVG", "PREMUL_SUM"),
}

# kind -> (takes a reduce op, has a root, one plain collective call: may run async,
# beside a concurrent writer or on two groups at once)
KINDS = {
    "all_reduce": (True, False, True),
    "all_reduce_coalesced": (True, False, False),
    "coalesced_all_reduce": (True, False, False),  # dist._coalescing_manager
    "reduce_scatter": (True, False, True),  # list form
    "reduce_scatter_tensor": (True, False, True),
    "coalesced_reduce_scatter_tensor": (True, False, False),
    "all_gather": (False, False, True),  # list form
    "all_gather_into_tensor": (False, False, True),
    "all_gather_into_tensor_in_place": (False, False, True),  # input is this rank's slice of the output (FSDP)
    "coalesced_all_gather_into_tensor": (False, False, False),
    "all_gather_coalesced": (False, False, False),
    "broadcast": (False, True, True),
    "reduce": (True, True, True),
    "gather": (False, True, False),
    "scatter": (False, True, False),
    "all_to_all_single": (False, False, True),  # uneven splits
    "all_to_all_single_even": (False, False, True),
    "all_to_all": (False, False, False),  # list form, uneven sizes
    "send_recv": (False, False, False),  # pairs of blocking send/recv
    "batch_isend_irecv": (False, False, False),  # a ring through batch_isend_irecv
}

# How each tensor of a call is made:
#   separate        one allocation per tensor, in a loop (caching-allocator neighbours)
#   adjacent_views  views back to back in one buffer (a flat parameter's shards)
#   padded_views    views at odd offsets into one buffer, with spare elements around each
#   strided         every other element of a buffer twice as long
#   transposed      the transpose of a (numel/2, 2) buffer (strided for odd numel)
LAYOUTS = ("separate", "adjacent_views", "padded_views", "strided", "transposed")
WRITABLE_LAYOUTS = ("padded_views", "strided")  # leave spare elements for a concurrent writer
# Where each rank's tensors live: its own npusim device, the next rank's device, the CPU,
# or the CPU on even ranks and npusim on odd ones.
PLACEMENTS = ("npusim", "other_device", "cpu", "mixed")
# The npusim group under test; the streamed group (NPUSIM_PEER_ACCESS=0) and gloo run
# every call too, as references.
GROUPS = ("in_place", "tcp", "streamed")
PREMUL_FACTORS = (2.0, 0.5, 3.0, -1.5)


@dataclass(frozen=True)
class Call:
    kind: str
    dtype: str = "float32"
    op: str | None = None
    numel: int = 1
    layout: str = "separate"
    placement: str = "npusim"
    root: int = 0
    repeat: int = 1  # iterations, each with freshly made tensors (bugs showed on the second)
    values: str = "int"  # "int": integer values (sums exact in any order); "random": randn floats
    churn: int = 0  # blocks allocated, then every other freed, before each iteration
    writer: bool = False  # a thread writes the buffer's spare elements while the call runs
    two_groups: bool = False  # also run on a second group of the same kind, concurrently
    factor: float = 2.0  # PREMUL_SUM's factor
    seed: int = 0

    def validate(self, world: int) -> None:
        reduces, rooted, single = KINDS[self.kind]
        assert self.dtype in DTYPES and self.layout in LAYOUTS and self.placement in PLACEMENTS, self
        assert (self.op is not None) == reduces, f"{self.kind}: op {self.op}"
        assert not reduces or self.op in OPS_BY_DTYPE[self.dtype], f"{self.op} on {self.dtype}"
        assert 0 <= self.root < world and self.numel >= 1 and self.repeat >= 1, self
        assert not (self.writer or self.two_groups) or single, f"{self.kind} is not one plain call"
        assert not self.writer or self.layout in WRITABLE_LAYOUTS, "a writer needs spare elements"

    def short(self) -> str:
        extra = [f"op={self.op}" if self.op else "", f"root={self.root}" if KINDS[self.kind][1] else "",
                 f"x{self.repeat}" if self.repeat > 1 else "", "writer" if self.writer else "",
                 "two-groups" if self.two_groups else "", f"churn={self.churn}" if self.churn else ""]
        return " ".join([self.kind, self.dtype, f"n={self.numel}", self.layout, self.placement, self.values]
                        + [e for e in extra if e])


@dataclass(frozen=True)
class Program:
    world: int
    group: str = "in_place"
    calls: tuple = field(default_factory=tuple)

    def validate(self) -> None:
        assert 2 <= self.world <= 8 and self.group in GROUPS and self.calls, self
        for c in self.calls:
            c.validate(self.world)

    def to_json(self) -> str:
        return json.dumps({"world": self.world, "group": self.group,
                           "calls": [_compact(c) for c in self.calls]}, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> "Program":
        d = json.loads(text)
        return Program(d["world"], d.get("group", "in_place"), tuple(Call(**c) for c in d["calls"]))

    def payload_bytes(self) -> int:
        """About how much one rank allocates for the largest call (for timeouts)."""
        return max(call_bytes(c, self.world) for c in self.calls)

    def describe(self) -> str:
        return f"world={self.world} group={self.group}: " + "; ".join(c.short() for c in self.calls)


def _compact(call: Call) -> dict:
    """The call's fields that differ from the defaults: short, still exact."""
    default = asdict(Call(call.kind))
    return {k: v for k, v in asdict(call).items() if k == "kind" or v != default[k]}


def element_size(dtype: str) -> int:
    return {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2, "int8": 1, "int32": 4, "int64": 8,
            "uint8": 1, "bool": 1, "complex64": 8}[dtype]


def call_bytes(call: Call, world: int) -> int:
    spread = 2 if call.layout in ("strided", "padded_views") else 1
    return world * call.numel * element_size(call.dtype) * spread * 2  # inputs and outputs


def with_calls(program: Program, calls) -> Program:
    return replace(program, calls=tuple(calls))
