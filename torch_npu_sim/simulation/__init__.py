"""Simulated time on npusim: the chip, the cost model's clocks and a per-op breakdown.

Every kernel launched on an npusim stream advances that stream's simulated clock by a
roofline cost on the chip (``max(FLOPs / peak, bytes / memory bandwidth)`` plus the launch
latency); copies use the host link; events and stream waits carry dependencies in simulated
time. Execution itself stays real and synchronous: simulated time is bookkeeping.

    >>> from torch_npu_sim import simulation as sim
    >>> sim.set_chip("h100-sxm5-80gb"); sim.enable(); sim.reset()
    >>> y = x @ w
    >>> sim.sim_time()            # seconds on the current stream's simulated clock
    >>> print(sim.format_breakdown())

Environment: ``NPUSIM_CHIP`` (a preset name or a JSON spec path) selects the chip and turns
the cost model on; ``NPUSIM_SIM_TIMING=1`` makes ``Event.elapsed_time`` report simulated ms.
"""
from __future__ import annotations

import dataclasses
import os

import torch

from . import chips
from .chips import PRESETS, ChipSpec
from .cost_only import cost_only, is_cost_only, set_cost_only
from .cost_only import host_reads as cost_only_host_reads
from . import efficiency as _efficiency
from .efficiency import Efficiency, efficiency_mode, get_efficiency, kernel_time_ns, set_efficiency

__all__ = [
    "ChipSpec", "PRESETS", "OpStat", "get_chip", "set_chip", "enable", "disable", "enabled",
    "set_simulated_timing", "simulated_timing", "sim_time", "sim_time_ns", "reset", "breakdown",
    "format_breakdown", "apply_environment", "cost_only", "set_cost_only", "is_cost_only", "cost_only_host_reads",
    "Efficiency", "set_efficiency", "get_efficiency", "efficiency_mode", "kernel_time_ns",
]

_KINDS = ("kernel", "memcpy", "memset", "collective")
_chip: ChipSpec = PRESETS["npusim-1"]


def _ops():
    return torch.ops.npusim_sim


def get_chip() -> ChipSpec:
    """The chip the cost model charges with."""
    return _chip


def set_chip(chip: str | ChipSpec | dict) -> ChipSpec:
    """Selects the chip: a preset name, a JSON spec path, a ChipSpec or a dict of its fields.

    Its memory becomes each device's capacity (unless NPUSIM_DEVICE_MEMORY is set) and its
    name the device name (unless NPUSIM_DEVICE_NAME is set); the capacity can only change
    while no device uses more than it.
    """
    global _chip
    if isinstance(chip, str):
        spec = chips.resolve(chip)
    elif isinstance(chip, dict):
        spec = chips.from_dict(chip)
    elif isinstance(chip, ChipSpec):
        spec = chip
    else:
        raise TypeError(f"set_chip expects a preset name, a spec path, a ChipSpec or a dict, got {type(chip).__name__}")
    _ops().set_chip_timing(
        [float(spec.peak_flops_fp32), float(spec.peak_flops_bf16), float(spec.peak_flops_int8)],
        float(spec.memory_bandwidth), spec.launch_latency_s * 1e9, float(spec.h2d_bandwidth),
        float(spec.d2h_bandwidth), spec.host_link_latency_s * 1e9)
    _ops().set_chip_memory(spec.memory_capacity, spec.name)
    _ops().set_links(float(spec.link_bandwidth), spec.link_latency_s * 1e9, chips.TOPOLOGIES.index(spec.topology))
    _ops().set_nodes(spec.ranks_per_node, float(spec.node_bandwidth), spec.node_latency_s * 1e9)
    _chip = spec
    _efficiency._follow_chip(spec)  # a calibrated efficiency follows the chip
    return spec


def enable(on: bool = True) -> None:
    """Turns the cost model on: every launch carries its FLOPs and bytes, and per-op totals are kept."""
    _ops().set_cost_model(bool(on))


def disable() -> None:
    _ops().set_cost_model(False)


def enabled() -> bool:
    """True while launches carry costs (cost model on, an activity observer, or simulated timing)."""
    return bool(_ops().cost_model_enabled())


def set_simulated_timing(on: bool = True) -> None:
    """Event.elapsed_time in simulated milliseconds (True) or host wall milliseconds (False)."""
    _ops().set_simulated_timing(bool(on))


def simulated_timing() -> bool:
    return bool(_ops().simulated_timing())


def _stream(stream) -> torch.Stream:
    if stream is None:
        return torch.npusim.current_stream()
    if isinstance(stream, (torch.device, str, int)):
        return torch.npusim.current_stream(stream)
    return stream


def sim_time_ns(stream=None) -> int:
    """The stream's simulated clock in ns (default: the current stream): when its work so far ends."""
    s = _stream(stream)
    return int(_ops().stream_sim_time(s.stream_id, s.device_index, s.device_type))


def sim_time(stream=None) -> float:
    """sim_time_ns in seconds."""
    return sim_time_ns(stream) / 1e9


def reset() -> None:
    """Every stream's and the host's simulated clock back to 0; per-op totals cleared."""
    _ops().reset()


@dataclasses.dataclass(frozen=True)
class OpStat:
    name: str
    kind: str  # kernel, memcpy, memset or collective
    count: int
    flops: float
    bytes: float
    sim_ns: int


def breakdown() -> list[OpStat]:
    """Per-op totals since the last reset (while the cost model is on), largest simulated time first."""
    names, kinds, counts, flops, nbytes, sim_ns = _ops().op_stats()
    stats = [OpStat(n, _KINDS[k], c, f, b, t) for n, k, c, f, b, t in zip(names, kinds, counts, flops, nbytes, sim_ns)]
    return sorted(stats, key=lambda s: (-s.sim_ns, s.name))


def format_breakdown(stats: list[OpStat] | None = None, top: int = 15) -> str:
    """The breakdown as a table: op, calls, simulated ms, share, achieved TFLOP/s and GB/s."""
    stats = breakdown() if stats is None else stats
    total = sum(s.sim_ns for s in stats) or 1
    lines = [f"{'op':<48} {'calls':>6} {'sim ms':>10} {'share':>6} {'TFLOP/s':>8} {'GB/s':>8}"]
    for s in stats[:top]:
        seconds = s.sim_ns / 1e9 or float("inf")
        lines.append(f"{s.name[:48]:<48} {s.count:>6} {s.sim_ns / 1e6:>10.3f} {100 * s.sim_ns / total:>5.1f}% "
                     f"{s.flops / seconds / 1e12:>8.2f} {s.bytes / seconds / 1e9:>8.1f}")
    if len(stats) > top:
        rest = stats[top:]
        lines.append(f"{f'({len(rest)} more ops)':<48} {sum(s.count for s in rest):>6} "
                     f"{sum(s.sim_ns for s in rest) / 1e6:>10.3f} {100 * sum(s.sim_ns for s in rest) / total:>5.1f}%")
    lines.append(f"{'total':<48} {sum(s.count for s in stats):>6} {total / 1e6:>10.3f}")
    return "\n".join(lines)


def apply_environment() -> None:
    """NPUSIM_CHIP (preset or spec path: that chip, cost model on), NPUSIM_COST_ONLY and NPUSIM_SIM_TIMING (0 or 1)."""
    chip = os.environ.get("NPUSIM_CHIP")
    if chip is not None:
        try:
            set_chip(chip)
        except ValueError as e:
            raise ValueError(f"NPUSIM_CHIP: {e}") from None
        enable()
    _efficiency.apply_environment()  # NPUSIM_EFFICIENCY=calibrated|roofline
    only = os.environ.get("NPUSIM_COST_ONLY")
    if only is not None:
        if only.strip() not in ("0", "1"):
            raise ValueError(f"NPUSIM_COST_ONLY must be 0 or 1, got {only!r}")
        reads = os.environ.get("NPUSIM_COST_ONLY_HOST_READS")
        if reads is not None and reads.strip() not in ("zeros", "error"):
            raise ValueError(f"NPUSIM_COST_ONLY_HOST_READS must be zeros or error, got {reads!r}")
        set_cost_only(only.strip() == "1", reads.strip() if reads else None)
    timing = os.environ.get("NPUSIM_SIM_TIMING")
    if timing is not None:
        if timing.strip() not in ("0", "1"):
            raise ValueError(f"NPUSIM_SIM_TIMING must be 0 or 1, got {timing!r}")
        set_simulated_timing(timing.strip() == "1")


def _apply_environment_at_load() -> None:
    """apply_environment at import: a bad value warns and keeps the default chip (import never fails)."""
    from .. import _C

    if _C._device_count() <= 0:
        return
    try:
        apply_environment()
    except ValueError as e:
        import warnings

        try:
            warnings.warn(f"npusim simulation: {e}; the default chip and settings stay", UserWarning, stacklevel=2)
        except Warning:  # warnings as errors: `import torch` must not fail for it
            import sys

            sys.stderr.write(f"UserWarning: npusim simulation: {e}\n")
