"""Per-op-class efficiency: how far below a chip's peak real kernels run (calibrated roofline).

The plain roofline charges a kernel ``max(flops / peak, bytes / bandwidth) + launch latency``.
Real chips never reach peak, and small kernels are further below it than large ones. With an
efficiency table on, a kernel of op class ``c`` (0 other/pointwise, 1 matmul, 2 attention) is charged

    max(flops / (peak[compute_class] * eff_compute[c](flops)),
        bytes / (bandwidth * eff_memory[c](bytes))) + launch latency

with every efficiency a saturating curve of the kernel's size ``s`` (FLOPs or bytes)

    eff(s) = max / (1 + (half / s) ** exponent)      (``max`` when half == 0)

``max`` is the fraction of the peak that large kernels reach, ``half`` the size at which they
reach half of it. With ``exponent`` 1 the curve is a fixed per-kernel overhead of
``half / (peak * max)`` seconds (pipeline fill, tail wave); exponents are kept in (0, 1] so
the charged time never falls as a kernel grows. Device-to-device copies use memory[other].

The default is the plain roofline (1.0 everywhere): a calibrated table is turned on explicitly,
``set_efficiency("calibrated")`` or ``NPUSIM_EFFICIENCY=calibrated``, and follows ``set_chip``
while on. Tables exist for the presets in TABLES; every figure cites its source below, and
``benchmarks/sim_validation_classes.py`` reruns the fits (``--fit``) and prints predicted vs
published per op class, saying which figures were fitted and which were held out.
"""
from __future__ import annotations

import dataclasses
import math
import os
import warnings

import torch

OP_CLASSES = ("other", "matmul", "attention")
MODES = ("roofline", "calibrated")


@dataclasses.dataclass(frozen=True)
class Curve:
    """eff(size) = max / (1 + (half / size) ** exponent); max at every size when half == 0."""

    max: float = 1.0
    half: float = 0.0
    exponent: float = 1.0

    def __post_init__(self):
        for field, ok, want in (("max", 0 < self.max <= 1, "in (0, 1]"), ("half", self.half >= 0, ">= 0"),
                                ("exponent", 0 < self.exponent <= 1, "in (0, 1]")):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok:
                raise ValueError(f"efficiency curve {field} must be a finite number {want}, got {value!r}")

    def at(self, size: float) -> float:
        """The fraction of the peak a kernel of `size` (> 0) reaches; the runtime's formula."""
        return self.max / (1.0 + math.pow(self.half / size, self.exponent)) if self.half > 0 else self.max


FULL = Curve()


@dataclasses.dataclass(frozen=True)
class Efficiency:
    """Compute and memory curves per op class (other, matmul, attention), with their sources."""

    compute: tuple = (FULL, FULL, FULL)
    memory: tuple = (FULL, FULL, FULL)
    name: str = "roofline"
    sources: dict = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self):
        for what in ("compute", "memory"):
            curves = getattr(self, what)
            if len(curves) != len(OP_CLASSES) or not all(isinstance(c, Curve) for c in curves):
                raise ValueError(f"efficiency {what} needs {len(OP_CLASSES)} Curves ({', '.join(OP_CLASSES)}), "
                                 f"got {curves!r}")


ROOFLINE = Efficiency()

# ---------------------------------------------------------------------------------------------
# Published figures (every one used below is here, with where it comes from)

MAMF_BOOK = ("Stas Bekman, Machine Learning Engineering, compute/accelerator/README.md, 'Maximum Achievable "
             "Matmul FLOPS comparison table', BF16 (github.com/stas00/ml-engineering; measured with "
             "compute/accelerator/benchmarks/mamf-finder.py, mean of 100 iterations, best shape)")
MAMF_BOOK_OLD = ("the same table in an earlier revision (CUDA 12.1, best-of iterations; "
                 "github.com/stas00/ml-engineering history)")
TRITON_TUTORIAL_A100 = ("Triton tutorial 03-matrix-multiplication, printed benchmark 'matmul-performance-fp16', "
                        "cuBLAS column, M=N=K (triton-lang.org/main/getting-started/tutorials/03-matrix-multiplication"
                        ".html, built on Triton's CI runner; the card is not named: A100-class by its 220 TFLOP/s "
                        "fp16 plateau and its emulated-fp8 rows)")
FA3_PAPER = ("Shah, Bikshandi, Zhang, Thakkar, Ramani, Dao: FlashAttention-3 (arXiv:2407.08608, NeurIPS 2024), "
             "figure 'Attention forward/backward speed, head dim 128 (H100 80GB SXM5)', BF16, no causal mask, "
             "batch x seqlen = 16k, 16 heads; bar labels as transcribed from the figure")
TRITONBENCH_FA3 = ("pytorch/benchmark commit ff65cb6 'Fix dimension order for FlashAttention-3 (#2391)': "
                   "run_benchmark.py triton --op flash_attention --d-head 128, flash_v3-tflops, (B, 16, S, 128) "
                   "with B*S = 16k, forward, on an H100 whose variant the commit does not name")
FA2_PAPER = ("Tri Dao: FlashAttention-2 (arXiv:2307.08691, ICLR 2024), abstract: 'reaching 50-73% of the "
             "theoretical maximum FLOPs/s on A100' (A100 80GB SXM4, forward pass at its best configuration)")
MEMORY_ASSUMED = ("assumed 0.90 of peak bandwidth for streaming kernels (large copies, adds): no published "
                  "STREAM-like measurement for this exact part was verified for this table; ~85-90% of HBM peak "
                  "is the commonly reported range; not validated")

# (M, N, K, TFLOP/s)
PUBLISHED_MAMF = {
    "a100-sxm4-80gb": (1024, 10240, 5120, 271.2),
    "h100-sxm5-80gb": (2048, 2048, 13312, 794.5),
}
PUBLISHED_MAMF_OLD = {  # held out: another software stack and best shape
    "a100-sxm4-80gb": (6912, 16384, 2048, 267.9),
    "h100-sxm5-80gb": (6144, 17920, 2816, 792.1),
}
MI300X_MAMF = (10240, 15360, 8192, 668.4)  # of 1300 dense; no mi300x preset (recorded only)
# M = N = K, fp16 cuBLAS TFLOP/s (A100-class; used to fit the matmul curve's shape)
PUBLISHED_MATMUL_SIZES_A100 = {
    256: 4.096, 384: 12.288, 512: 26.214401, 640: 42.666665, 768: 63.195428, 896: 78.051553,
    1024: 110.376426, 1152: 135.726544, 1280: 157.538463, 1408: 155.765024, 1536: 176.947204,
    1664: 183.651271, 1792: 172.914215, 1920: 200.347822, 2048: 223.696203, 2176: 211.827867,
    2304: 228.592087, 2432: 203.583068, 2560: 224.438347, 2688: 200.704002, 2816: 212.752230,
    2944: 222.482283, 3072: 209.715208, 3200: 216.216207, 3328: 207.467716, 3456: 217.308808,
    3584: 219.305830, 3712: 206.399476, 3840: 210.250955, 3968: 208.587935, 4096: 219.668951,
}
# seqlen -> TFLOP/s, head dim 128, (16k / seqlen) x 16 heads
PUBLISHED_FA3_FWD_H100 = {512: 467, 1024: 565, 2048: 625, 4096: 638, 8192: 646, 16384: 648}
PUBLISHED_FA3_BWD_H100 = {512: 316, 1024: 424, 2048: 501, 4096: 542, 8192: 559, 16384: 561}
PUBLISHED_TRITONBENCH_FA3_FWD_H100 = {512: 430.32, 1024: 517.099, 2048: 565.544, 4096: 590.233, 8192: 614.234,
                                      16384: 620.73}
PUBLISHED_FA2_FWD_A100_FRACTION = 0.73  # of 312 TFLOP/s, seqlen 16k, head dim 128 (the best case)

# ---------------------------------------------------------------------------------------------
# The tables. Fits: benchmarks/sim_validation_classes.py --fit (least squares on log TFLOP/s through
# the full charged time, launch latency and memory term included).
#
# matmul: the curve's shape (half, exponent) is fitted to PUBLISHED_MATMUL_SIZES_A100 (all 31 sizes:
#   half 1.09e9 FLOPs, exponent 0.90, rms 5.6%); its max is then pinned so that the MAMF shape
#   charges exactly the MAMF figure (PUBLISHED_MAMF). H100: the same shape with half scaled by the
#   peak ratio (989.4 / 312: the same ramp time at peak rate), max pinned to its MAMF.
# attention: fitted to PUBLISHED_FA3_FWD_H100 (max 0.6764, half 2.47e10 FLOPs, exponent 1.0; within
#   3% at every seqlen). A100: half scaled by the peak ratio, max pinned so seqlen 16k, head dim 128
#   forward charges 73% of 312 TFLOP/s (FA2_PAPER). Forward and backward share the curve (the op
#   classes are other, matmul, attention): backward is predicted too fast (see the validation).
# memory: MEMORY_ASSUMED for every class.

_MEM = Curve(0.90)


def _table(name, mm, attn, sources):
    return Efficiency(compute=(FULL, mm, attn), memory=(_MEM, _MEM, _MEM), name=name, sources=sources)


A100_MATMUL = Curve(0.8945, 1.09e9, 0.90)
A100_ATTENTION = Curve(0.7330, 7.79e9, 1.0)
H100_MATMUL = Curve(0.8691, 3.46e9, 0.90)
H100_ATTENTION = Curve(0.6764, 2.47e10, 1.0)
# h100-sxm5-96gb (HBM2e 2.4 TB/s, 500 W): the same die and clocks limits as the SXM5 80 GB but a
# 500 W power cap instead of 700 W. Sustained tensor-core clocks under a power cap scale about as
# the cube root of power (dynamic power ~ f V^2, V ~ f): (500 / 700) ** (1 / 3) = 0.894, applied
# to the compute maxima. An estimate, not a measurement: no public matmul or attention figure for
# this part was found. Memory: the same 0.90 fraction of its own 2.4 TB/s.
POWER_SCALE_96GB = (500 / 700) ** (1 / 3)
H100_96GB_MATMUL = Curve(round(0.8691 * POWER_SCALE_96GB, 4), 3.46e9, 0.90)
H100_96GB_ATTENTION = Curve(round(0.6764 * POWER_SCALE_96GB, 4), 2.47e10, 1.0)

TABLES: dict[str, Efficiency] = {
    "a100-sxm4-80gb": _table("a100-sxm4-80gb", A100_MATMUL, A100_ATTENTION, {
        "matmul.max": MAMF_BOOK + ": NVIDIA A100 SXM 271.2 TFLOPS of 312 at 1024x10240x5120 (pinned)",
        "matmul.shape": TRITON_TUTORIAL_A100 + " (fitted: half 1.09e9 FLOPs, exponent 0.90)",
        "attention.max": FA2_PAPER + " (pinned at seqlen 16k, head dim 128)",
        "attention.shape": FA3_PAPER + " (the H100 fit, half scaled by 312 / 989.4)",
        "memory": MEMORY_ASSUMED,
    }),
    "h100-sxm5-80gb": _table("h100-sxm5-80gb", H100_MATMUL, H100_ATTENTION, {
        "matmul.max": MAMF_BOOK + ": NVIDIA H100 SXM 794.5 TFLOPS of 989 at 2048x2048x13312 (pinned)",
        "matmul.shape": TRITON_TUTORIAL_A100 + " (the A100 fit, half scaled by 989.4 / 312)",
        "attention": FA3_PAPER + ", forward (fitted: max 0.6764, half 2.47e10 FLOPs, exponent 1)",
        "memory": MEMORY_ASSUMED,
    }),
    "h100-sxm5-96gb": _table("h100-sxm5-96gb", H100_96GB_MATMUL, H100_96GB_ATTENTION, {
        "matmul": "h100-sxm5-80gb's curve, max x (500 W / 700 W)^(1/3) = 0.894 (assumed power-cap scaling)",
        "attention": "h100-sxm5-80gb's curve, max x (500 W / 700 W)^(1/3) = 0.894 (assumed power-cap scaling)",
        "memory": MEMORY_ASSUMED + " (of the 96 GB part's own 2.4 TB/s)",
    }),
}

# ---------------------------------------------------------------------------------------------

_mode = "roofline"
_current: Efficiency = ROOFLINE


def _ops():
    return torch.ops.npusim_sim


def _flat(curves) -> list[float]:
    return [float(v) for c in curves for v in (c.max, c.half, c.exponent)]


def _push(table: Efficiency) -> None:
    if table == ROOFLINE:
        _ops().set_efficiency([], [])
    else:
        _ops().set_efficiency(_flat(table.compute), _flat(table.memory))


def table_for(chip: str) -> Efficiency:
    """The calibrated table of a preset by name (any case); ValueError naming the presets that have one."""
    key = chip.lower() if isinstance(chip, str) else chip
    if key not in TABLES:
        raise ValueError(f"no calibrated efficiency for chip {chip!r}: tables exist for {', '.join(TABLES)} "
                         "(or pass an Efficiency)")
    return TABLES[key]


def set_efficiency(mode: str | Efficiency = "calibrated", chip: str | None = None) -> Efficiency:
    """Selects the efficiency of this process's cost model.

    "roofline": 1.0 everywhere (the plain roofline, the default). "calibrated": the table of
    `chip` (default: the current chip's preset), which then follows set_chip while on. An
    Efficiency: that table, kept across set_chip.
    """
    global _mode, _current
    from . import get_chip

    if isinstance(mode, Efficiency):
        _push(mode)
        _mode, _current = "custom", mode
        return mode
    if not isinstance(mode, str) or mode.strip().lower() not in MODES:
        raise ValueError(f"efficiency must be one of {', '.join(MODES)} or an Efficiency, got {mode!r}")
    mode = mode.strip().lower()
    table = ROOFLINE if mode == "roofline" else table_for(chip if chip is not None else get_chip().name)
    _push(table)
    _mode, _current = mode, table
    return table


def efficiency_mode() -> str:
    """"roofline", "calibrated" or "custom"."""
    return _mode


def get_efficiency() -> Efficiency:
    """The table the runtime charges with now (read back from the runtime)."""
    compute, memory = _ops().get_efficiency()

    def curves(flat):
        return tuple(Curve(flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]) for i in range(len(OP_CLASSES)))

    got = Efficiency(curves(compute), curves(memory), name=_current.name)
    return _current if got == _current else dataclasses.replace(got, name="(set elsewhere)")


def _follow_chip(spec) -> None:
    """Called by set_chip: in calibrated mode, the new chip's table (or the roofline, with a warning)."""
    global _mode, _current
    if _mode != "calibrated":
        return
    try:
        set_efficiency("calibrated", spec.name)
    except ValueError as e:
        _push(ROOFLINE)
        _mode, _current = "roofline", ROOFLINE
        warnings.warn(f"npusim efficiency: {e}; the plain roofline is used", UserWarning, stacklevel=3)


def apply_environment() -> None:
    """NPUSIM_EFFICIENCY=calibrated|roofline (after NPUSIM_CHIP)."""
    value = os.environ.get("NPUSIM_EFFICIENCY")
    if value is None:
        return
    try:
        set_efficiency(value)
    except ValueError as e:
        raise ValueError(f"NPUSIM_EFFICIENCY: {e}") from None


def kernel_time_ns(flops: float, bytes: float, compute_class: int = 0, op_class: int = 0) -> int:
    """Exactly what the runtime charges one kernel launch of this cost on the current chip and efficiency."""
    return int(_ops().kernel_time_ns(float(flops), float(bytes), int(compute_class), int(op_class)))


def _round_ns(ns: float) -> int:
    """llround for ns >= 0 (half away from zero), exact for doubles below 2^52."""
    if not (ns > 0) or not math.isfinite(ns):
        return 0
    whole = math.floor(ns)
    return int(whole) + (1 if ns - whole >= 0.5 else 0)


def predict_time_ns(flops: float, bytes: float, compute_class: int, op_class: int, chip,
                    efficiency: Efficiency = ROOFLINE) -> int:
    """The charge computed here in Python from a ChipSpec and a table (the runtime's formula, independently)."""
    peak = chip.peak_flops(compute_class)
    compute_ns = flops / (peak * efficiency.compute[op_class].at(flops)) * 1e9 if flops > 0 else 0.0
    memory_ns = bytes / (chip.memory_bandwidth * efficiency.memory[op_class].at(bytes)) * 1e9 if bytes > 0 else 0.0
    return _round_ns(max(compute_ns, memory_ns) + chip.launch_latency_s * 1e9)
