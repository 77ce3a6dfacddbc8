"""How a rank makes a call's tensors (rank-worker side): the input values, derived from
the call's seed alone, and the memory they live in, as the call's layout and placement
say. The gloo reference gets the same values in plain contiguous CPU tensors."""
import torch

from .programs import Call

TORCH_DTYPES = {name: getattr(torch, name) for name in
                ("float32", "float64", "bfloat16", "float16", "int8", "int32", "int64", "uint8", "bool", "complex64")}
# Outputs start filled with this, on every target alike: an element a collective forgot
# to write then differs from the reference, which did write it.
SENTINEL = {"bool": True, "uint8": 201, "int8": -77, "complex64": -7.25}
SPARE_START = 11  # spare elements' value before any writer runs


def call_values(call: Call, rank: int, iteration: int, index: int, numel: int) -> torch.Tensor:
    """Rank `rank`'s values for tensor `index` of `call` (CPU, contiguous, 1-D).

    Integer values keep SUM (and PRODUCT, of +-1 and 2) exact in every dtype and any
    order, so gloo's result must match bit for bit; MIN/MAX and the bitwise ops use a wide
    range (all bits, for the bitwise ops on integers)."""
    g = torch.Generator().manual_seed((call.seed * 1_000_003 + rank * 10_007 + iteration * 101 + index) % (1 << 62))
    dtype = TORCH_DTYPES[call.dtype]
    if call.dtype == "complex64":
        real = _floats(call, g, 2 * numel, torch.float32)
        return torch.view_as_complex(real.view(numel, 2))
    if call.dtype == "bool":
        return torch.randint(0, 2, (numel,), generator=g).bool()
    if dtype.is_floating_point:
        return _floats(call, g, numel, dtype)
    info = torch.iinfo(dtype)
    if call.op in ("BAND", "BOR", "BXOR") or call.op is None:  # moved, not combined: any bits
        lo, hi = max(info.min, -(1 << 62)), min(info.max, 1 << 62)
        return torch.randint(lo, hi, (numel,), generator=g, dtype=torch.int64).to(dtype)
    if call.op == "PRODUCT":  # wraps in int8/uint8 at many ranks, the same way in every order
        choices = torch.tensor([1, 2, 1, 3] if call.dtype == "uint8" else [1, -1, 2, 1, -2])
        return choices[torch.randint(0, len(choices), (numel,), generator=g)].to(dtype)
    if call.op in ("MIN", "MAX"):
        return torch.randint(max(info.min, -1000), min(info.max, 1000), (numel,), generator=g).to(dtype)
    lo = 0 if call.dtype == "uint8" else -8
    return torch.randint(lo, 9, (numel,), generator=g).to(dtype)


def _floats(call: Call, g: torch.Generator, numel: int, dtype: torch.dtype) -> torch.Tensor:
    if call.values == "random" or call.op is None:
        x = torch.randn(numel, generator=g, dtype=torch.float64)
        if call.op == "PRODUCT":
            x = 1 + x / 8  # stays far from overflow and underflow at 8 ranks
        return x.to(dtype)
    if call.op == "PRODUCT":
        choices = torch.tensor([1.0, -1.0, 2.0, 0.5, 1.0])
        return choices[torch.randint(0, len(choices), (numel,), generator=g)].to(dtype)
    return torch.randint(-8, 9, (numel,), generator=g).to(dtype)


def sentinel(dtype: str):
    return SENTINEL.get(dtype, -7)


class Maker:
    """Makes the tensors of one call iteration on one rank; keeps every buffer alive (and
    the spare elements a concurrent writer may touch) until the iteration ends."""

    def __init__(self, call: Call, rank: int, iteration: int, plain: bool):
        self.call, self.rank, self.iteration, self.plain = call, rank, iteration, plain
        self.dtype = TORCH_DTYPES[call.dtype]
        self.spares: list[torch.Tensor] = []
        self.held: list[torch.Tensor] = []
        self.device = torch.device("cpu") if plain else placement_device(call.placement, rank)
        if not plain and call.churn:
            self._churn(call.churn)

    def _churn(self, blocks: int) -> None:
        # Holes of assorted sizes between live blocks: the caching allocator hands them out
        # again, so the call's tensors land in reused blocks, next to live ones.
        sizes = [max(1, self.call.numel >> (k % 3)) for k in range(blocks)]
        made = [torch.empty(s, dtype=self.dtype, device=self.device) for s in sizes]
        self.held.extend(made[1::2])
        del made

    def make(self, numels: list[int], flat: bool = False) -> list[torch.Tensor]:
        """One list argument's tensors (1-D, or 2-D when transposed unless `flat`)."""
        if self.plain:
            # gloo moves some collectives' complex tensors only as their real views
            ts = [torch.empty(n, dtype=self.dtype) for n in numels]
            return [torch.view_as_real(t) if t.is_complex() else t for t in ts]
        layout = self.call.layout
        if layout == "transposed" and (flat or any(n % 2 for n in numels)):
            layout = "strided"
        dev, dt = self.device, self.dtype
        if layout == "separate":
            return [torch.empty(n, dtype=dt, device=dev) for n in numels]
        if layout == "adjacent_views":
            buf = torch.empty(max(1, sum(numels)), dtype=dt, device=dev)
            self.held.append(buf)
            return list(buf[:sum(numels)].split(numels)) if numels else []
        if layout == "padded_views":
            pad = 3 + self.call.seed % 13  # odd byte offsets, not cache-line aligned
            buf = torch.full((sum(numels) + pad * (len(numels) + 1),), SPARE_START, dtype=dt, device=dev)
            self.held.append(buf)
            views, at = [], pad
            self.spares.append(buf[:pad])
            for n in numels:
                views.append(buf[at:at + n])
                self.spares.append(buf[at + n:at + n + pad])
                at += n + pad
            return views
        if layout == "strided":
            views = []
            for n in numels:
                buf = torch.full((2 * n,), SPARE_START, dtype=dt, device=dev)
                self.held.append(buf)
                views.append(buf[::2])
                self.spares.append(buf[1::2])
            return views
        assert layout == "transposed", layout
        return [torch.empty(n // 2, 2, dtype=dt, device=dev).t() for n in numels]

    def inputs(self, numels: list[int], first_index: int = 0, flat: bool = False,
               scale: float | None = None) -> list[torch.Tensor]:
        """Tensors made by `make`, holding this rank's values (times `scale`, the
        PREMUL_SUM factor the gloo reference applies itself)."""
        ts = self.make(numels, flat)
        for k, (t, n) in enumerate(zip(ts, numels)):
            v = call_values(self.call, self.rank, self.iteration, first_index + k, n)
            if scale is not None:
                v = v * scale
            t.copy_(torch.view_as_real(v) if v.is_complex() and not t.is_complex() else v.view(t.shape))
        return ts

    def outputs(self, numels: list[int], flat: bool = False) -> list[torch.Tensor]:
        ts = self.make(numels, flat)
        for t in ts:
            t.fill_(sentinel(self.call.dtype))
        return ts


def placement_device(placement: str, rank: int) -> torch.device:
    count = torch.npusim.device_count()
    if placement == "cpu" or (placement == "mixed" and rank % 2 == 0):
        return torch.device("cpu")
    if placement == "other_device":
        return torch.device("npusim", (rank + 1) % count)
    return torch.device("npusim", rank % count)
