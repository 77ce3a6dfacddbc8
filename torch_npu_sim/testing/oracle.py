"""What counts as a right answer: results compared bit for bit where every correct
implementation must agree bit for bit, else within a tolerance for the order of a sum.

- Against gloo: bit for bit for integers and bools, for anything a collective only moves,
  and for integer-valued floats combined by SUM, PRODUCT, MIN or MAX (exact in any order);
  within tolerance for random floats, AVG and PREMUL_SUM (rounding differs by order).
- Against the streamed path (NPUSIM_PEER_ACCESS=0): always bit for bit: the in-place
  algorithms combine the ranks in the streamed algorithms' order, by design.
"""
import torch

from .programs import Call

# (rtol, atol per rank): a sum of `world` values rounds up to about world ulps apart
TOLERANCE = {torch.float64: (1e-12, 1e-12), torch.float32: (1e-5, 1e-5), torch.complex64: (1e-5, 1e-5),
             torch.float16: (2e-3, 4e-3), torch.bfloat16: (2e-2, 3e-2)}
_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def exact_against_gloo(call: Call) -> bool:
    if call.op is None or call.dtype not in ("float32", "float64", "bfloat16", "float16", "complex64"):
        return True
    return call.values == "int" and call.op in ("SUM", "PRODUCT", "MIN", "MAX")


def bits(t: torch.Tensor) -> torch.Tensor:
    t = t.contiguous().reshape(-1)
    if t.is_complex():
        t = torch.view_as_real(t).reshape(-1)
    if t.dtype == torch.bool or t.is_floating_point():
        return t.view(_INT_VIEW[t.element_size()])
    return t


def compare(what: str, got: list, want: list, exact: bool, world: int) -> list[str]:
    """Problems (empty when `got` matches `want`), each naming the first differing element."""
    if len(got) != len(want):
        return [f"{what}: {len(got)} output tensors, the reference has {len(want)}"]
    problems = []
    for i, (g, w) in enumerate(zip(got, want)):
        if g.numel() != w.numel() or g.dtype != w.dtype:
            problems.append(f"{what} output {i}: {g.dtype}[{g.numel()}], the reference {w.dtype}[{w.numel()}]")
            continue
        if exact:
            bad = bits(g) != bits(w)
        else:
            rtol, atol = TOLERANCE[w.dtype]
            gd, wd = g.reshape(-1), w.reshape(-1)
            if gd.is_complex():
                gd, wd = torch.view_as_real(gd).reshape(-1), torch.view_as_real(wd).reshape(-1)
            gd, wd = gd.double(), wd.double()
            bad = ~torch.isclose(gd, wd, rtol=rtol, atol=atol * world, equal_nan=True)
        count = int(bad.sum())
        if count:
            first = int(bad.nonzero()[0, 0])
            flat_g, flat_w = _flat(g), _flat(w)
            k = first if not g.is_complex() else first // 2
            problems.append(f"{what} output {i}: {count} of {bad.numel()} elements differ "
                            f"({'bit for bit' if exact else 'beyond tolerance'}); first at {k}: "
                            f"got {flat_g[k].item()!r}, want {flat_w[k].item()!r}")
    return problems


def _flat(t):
    return t.contiguous().reshape(-1)
