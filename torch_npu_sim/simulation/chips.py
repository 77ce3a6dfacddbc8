"""Chip specifications: named presets built from public figures, and custom specs (JSON).

A spec gives the figures the cost model charges with: peak FLOP/s per compute class
(fp32, bf16/fp16, int8), memory bandwidth and capacity, cores, kernel launch latency, host
link (H2D/D2H) bandwidth and latency, and the inter-chip links (bandwidth per direction,
latency, topology). Every preset figure cites its source; figures that are assumptions say so.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

GB = 1e9
TB = 1e12
GiB = 1 << 30

TOPOLOGIES = ("switch", "ring", "mesh")


@dataclasses.dataclass(frozen=True)
class ChipSpec:
    name: str
    peak_flops_fp32: float  # FLOP/s
    peak_flops_bf16: float  # FLOP/s, bf16 and fp16
    peak_flops_int8: float  # OP/s
    memory_bandwidth: float  # bytes/s
    memory_capacity: int  # bytes per chip
    cores: int
    launch_latency_s: float
    h2d_bandwidth: float  # bytes/s over the host link
    d2h_bandwidth: float
    host_link_latency_s: float
    link_bandwidth: float  # bytes/s per direction between two chips
    link_latency_s: float
    topology: str  # "switch" (all-to-all through a switch), "ring" or "mesh"
    sources: dict = dataclasses.field(default_factory=dict, compare=False)
    # several nodes: chips per node (0: all in one node) and each chip's network link between nodes
    ranks_per_node: int = 0
    node_bandwidth: float = 50 * GB  # bytes/s per direction
    node_latency_s: float = 10e-6

    def __post_init__(self):
        problems = []
        if not isinstance(self.name, str) or not 1 <= len(self.name) <= 63 or not self.name.isprintable():
            problems.append(f"name must be 1 to 63 printable characters, got {self.name!r}")
        for field in ("peak_flops_fp32", "peak_flops_bf16", "peak_flops_int8", "memory_bandwidth", "h2d_bandwidth",
                      "d2h_bandwidth", "link_bandwidth", "node_bandwidth"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                problems.append(f"{field} must be a finite number > 0, got {value!r}")
        for field in ("launch_latency_s", "host_link_latency_s", "link_latency_s", "node_latency_s"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                problems.append(f"{field} must be a finite number >= 0, got {value!r}")
        for field in ("memory_capacity", "cores"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                problems.append(f"{field} must be an integer > 0, got {value!r}")
        if isinstance(self.ranks_per_node, bool) or not isinstance(self.ranks_per_node, int) or self.ranks_per_node < 0:
            problems.append(f"ranks_per_node must be an integer >= 0 (0: one node), got {self.ranks_per_node!r}")
        if self.topology not in TOPOLOGIES:
            problems.append(f"topology must be one of {', '.join(TOPOLOGIES)}, got {self.topology!r}")
        if problems:
            raise ValueError(f"invalid chip spec {self.name!r}: " + "; ".join(problems))

    def peak_flops(self, compute_class: int) -> float:
        return (self.peak_flops_fp32, self.peak_flops_bf16, self.peak_flops_int8)[compute_class]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_FIELDS = {f.name for f in dataclasses.fields(ChipSpec)}
_OPTIONAL = {"sources", "ranks_per_node", "node_bandwidth", "node_latency_s"}


def from_dict(data: dict, where: str = "chip spec") -> ChipSpec:
    """A spec from a dict with exactly ChipSpec's fields (sources optional)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _FIELDS)
    missing = sorted(_FIELDS - _OPTIONAL - set(data))
    if unknown or missing:
        parts = ([f"unknown fields {unknown}"] if unknown else []) + ([f"missing fields {missing}"] if missing else [])
        raise ValueError(f"{where}: " + "; ".join(parts))
    return ChipSpec(**data)


def load(path: str) -> ChipSpec:
    """A spec from a JSON file."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise ValueError(f"cannot read chip spec file {path!r}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"chip spec file {path!r} is not valid JSON: {e}") from None
    return from_dict(data, where=f"chip spec file {path!r}")


A100_DATASHEET = "NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf)"
A100_WHITEPAPER = "NVIDIA A100 Tensor Core GPU Architecture whitepaper (2020), tables 1 and 3"
H100_DATASHEET = "NVIDIA H100 Tensor Core GPU datasheet (resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet)"
H100_WHITEPAPER = "NVIDIA H100 Tensor Core GPU Architecture whitepaper (2022), table 3"
PCIE4 = "PCI-SIG PCIe 4.0 x16: 16 GT/s x 16 lanes, 128b/130b = 31.5 GB/s per direction; ~25 GB/s achievable (assumed 80%)"
PCIE5 = "PCI-SIG PCIe 5.0 x16: 32 GT/s x 16 lanes = 63 GB/s per direction; ~50 GB/s achievable (assumed 80%)"
LAUNCH = "assumed: typical measured CUDA kernel launch overhead, about 5 us"
DGX_A100 = "NVIDIA DGX A100 System Architecture whitepaper (2020), networking"
DGX_H100 = "NVIDIA DGX H100 User Guide, hardware overview: 8x NVIDIA ConnectX-7 (400 Gb/s) for the compute fabric"
IB_LATENCY = "assumed: about 10 us per inter-node message (NCCL's network latency on InfiniBand is a few us plus software)"
TITAN_PERF = ("torchtitan docs/performance.md (github.com/pytorch/torchtitan): Llama 3.1 8B runs on 8 H100s with "
              "96 GB HBM2e, 2.4 TB/s memory bandwidth, 500 W power limit, NVLink within the host")
RK3588 = "Rockchip RK3588 datasheet: NPU 6 TOPS INT8, 3 cores; LPDDR4x/LPDDR5 memory"

H100_SXM5_80GB = ChipSpec(
    name="h100-sxm5-80gb", peak_flops_fp32=67e12, peak_flops_bf16=989.4e12, peak_flops_int8=1978.9e12,
    memory_bandwidth=3350 * GB, memory_capacity=80 * GiB, cores=132, launch_latency_s=5e-6,
    h2d_bandwidth=50 * GB, d2h_bandwidth=50 * GB, host_link_latency_s=10e-6,
    link_bandwidth=450 * GB, link_latency_s=5e-6, topology="switch",
    sources={
        "peak_flops_fp32": H100_DATASHEET + ": FP32 67 TFLOPS (SXM)",
        "peak_flops_bf16": H100_DATASHEET + ": BF16 Tensor Core 1,979 TFLOPS with sparsity = 989.4 dense",
        "peak_flops_int8": H100_DATASHEET + ": INT8 Tensor Core 3,958 TOPS with sparsity = 1,979 dense",
        "memory_bandwidth": H100_DATASHEET + ": HBM3 3.35 TB/s (SXM)",
        "memory_capacity": H100_DATASHEET + ": 80GB",
        "cores": H100_WHITEPAPER + ": 132 SMs (SXM5)",
        "launch_latency_s": LAUNCH,
        "h2d_bandwidth": PCIE5, "d2h_bandwidth": PCIE5,
        "host_link_latency_s": "assumed: about 10 us per PCIe DMA transfer",
        "link_bandwidth": H100_DATASHEET + ": NVLink 900 GB/s (both directions) = 450 GB/s per direction",
        "link_latency_s": "assumed: about 5 us per NVLink message (NCCL small-message latency)",
        "topology": "HGX H100 8-GPU: NVSwitch, all-to-all",
        "ranks_per_node": DGX_H100 + ": 8 GPUs per system",
        "node_bandwidth": DGX_H100 + ": 8 ConnectX-7 400 Gb/s InfiniBand/Ethernet for compute, one per GPU = 50 GB/s",
        "node_latency_s": IB_LATENCY,
    },
    ranks_per_node=8, node_bandwidth=50 * GB, node_latency_s=10e-6,
)
H100_SXM5_96GB = dataclasses.replace(
    H100_SXM5_80GB, name="h100-sxm5-96gb", memory_bandwidth=2400 * GB, memory_capacity=96 * GiB,
    sources={
        **H100_SXM5_80GB.sources,
        "memory_bandwidth": TITAN_PERF + ": 96 GB HBM2e, 2.4 TB/s memory bandwidth",
        "memory_capacity": TITAN_PERF + ": 96 GB HBM2e",
        "peak_flops_fp32": H100_DATASHEET + ": the H100 SXM5 compute figures (same GH100 die, 132 SMs); "
                           "the 500 W power limit (TITAN_PERF) is below the 700 W of the datasheet, so sustained "
                           "clocks and achievable rates are lower than on the 80 GB SXM5",
        "peak_flops_bf16": H100_DATASHEET + ": BF16 Tensor Core 989.4 TFLOPS dense (as the 80 GB SXM5)",
        "peak_flops_int8": H100_DATASHEET + ": INT8 1,979 TOPS dense (as the 80 GB SXM5)",
        "link_bandwidth": TITAN_PERF + ": NVLink within the host; " + H100_DATASHEET + ": 900 GB/s both directions",
        "ranks_per_node": TITAN_PERF + ": 8 GPUs in one host",
        "node_bandwidth": "assumed: as DGX H100, one 400 Gb/s link per GPU = 50 GB/s",
    },
)

# Keyed by lower-case name; set_chip also accepts any case.
PRESETS: dict[str, ChipSpec] = {
    spec.name.lower(): spec
    for spec in (
        # the generic default chip; the runtime's built-in figures and device name are the same
        ChipSpec(
            name="NPUSim-1", peak_flops_fp32=50e12, peak_flops_bf16=200e12, peak_flops_int8=400e12,
            memory_bandwidth=1.0 * TB, memory_capacity=16 * GiB, cores=32, launch_latency_s=5e-6,
            h2d_bandwidth=25 * GB, d2h_bandwidth=25 * GB, host_link_latency_s=10e-6,
            link_bandwidth=100 * GB, link_latency_s=5e-6, topology="switch",
            sources={"all": "the generic simulated chip (no real counterpart)"},
        ),
        ChipSpec(
            name="a100-sxm4-80gb", peak_flops_fp32=19.5e12, peak_flops_bf16=312e12, peak_flops_int8=624e12,
            memory_bandwidth=2039 * GB, memory_capacity=80 * GiB, cores=108, launch_latency_s=5e-6,
            h2d_bandwidth=25 * GB, d2h_bandwidth=25 * GB, host_link_latency_s=10e-6,
            link_bandwidth=300 * GB, link_latency_s=5e-6, topology="switch",
            sources={
                "peak_flops_fp32": A100_DATASHEET + ": FP32 19.5 TFLOPS (PyTorch's default fp32 matmul, TF32 off)",
                "peak_flops_bf16": A100_DATASHEET + ": BF16/FP16 Tensor Core 312 TFLOPS (dense)",
                "peak_flops_int8": A100_DATASHEET + ": INT8 Tensor Core 624 TOPS (dense)",
                "memory_bandwidth": A100_DATASHEET + ": 80GB HBM2e, 2,039 GB/s (SXM)",
                "memory_capacity": A100_DATASHEET + ": 80GB",
                "cores": A100_WHITEPAPER + ": 108 SMs",
                "launch_latency_s": LAUNCH,
                "h2d_bandwidth": PCIE4, "d2h_bandwidth": PCIE4,
                "host_link_latency_s": "assumed: about 10 us per PCIe DMA transfer",
                "link_bandwidth": A100_DATASHEET + ": NVLink 600 GB/s (both directions) = 300 GB/s per direction",
                "link_latency_s": "assumed: about 5 us per NVLink message (NCCL small-message latency)",
                "topology": "HGX A100 8-GPU: NVSwitch, all-to-all",
                "ranks_per_node": DGX_A100 + ": 8 GPUs per system",
                "node_bandwidth": DGX_A100 + ": 8 single-port ConnectX-6 200 Gb/s HDR InfiniBand for compute, one per GPU = 25 GB/s",
                "node_latency_s": IB_LATENCY,
            },
            ranks_per_node=8, node_bandwidth=25 * GB, node_latency_s=10e-6,
        ),
        H100_SXM5_80GB,
        H100_SXM5_96GB,
        ChipSpec(
            name="edge-npu", peak_flops_fp32=0.1e12, peak_flops_bf16=1.5e12, peak_flops_int8=6e12,
            memory_bandwidth=34 * GB, memory_capacity=4 * GiB, cores=3, launch_latency_s=20e-6,
            h2d_bandwidth=10 * GB, d2h_bandwidth=10 * GB, host_link_latency_s=5e-6,
            link_bandwidth=1 * GB, link_latency_s=50e-6, topology="ring",
            sources={
                "peak_flops_int8": RK3588 + " (a small edge NPU of that class)",
                "cores": RK3588,
                "peak_flops_bf16": "assumed: a quarter of the INT8 rate (FP16 MACs at 1/4 the INT8 ones)",
                "peak_flops_fp32": "assumed: no FP32 MAC array; 0.1 TFLOPS on the host-side vector units",
                "memory_bandwidth": "LPDDR4x-4266, 64-bit: 4266 MT/s x 8 bytes = 34 GB/s (JEDEC JESD209-4X)",
                "memory_capacity": "assumed: 4 GiB of shared LPDDR memory for the NPU",
                "launch_latency_s": "assumed: 20 us per NPU job submission through a driver ioctl",
                "h2d_bandwidth": "assumed: shared memory, bounded by a cache-maintained copy of ~10 GB/s",
                "d2h_bandwidth": "assumed: as h2d_bandwidth",
                "host_link_latency_s": "assumed: 5 us per cache maintenance operation",
                "link_bandwidth": "assumed: 1 GB/s between boards over PCIe 2.0 x2 / Ethernet-class links",
                "link_latency_s": "assumed: 50 us",
                "topology": "assumed: boards chained in a ring",
                "ranks_per_node": "assumed: one NPU per board, every board one node of the ring (0: a single node)",
                "node_bandwidth": "not used: a single node",
                "node_latency_s": "not used: a single node",
            },
        ),
    )
}


def resolve(name_or_path: str) -> ChipSpec:
    """A preset by name, or a JSON spec file by path."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ValueError(f"a chip is a preset name ({', '.join(PRESETS)}) or a JSON spec path, got {name_or_path!r}")
    if name_or_path.lower() in PRESETS:
        return PRESETS[name_or_path.lower()]
    if os.path.sep in name_or_path or name_or_path.endswith(".json") or os.path.exists(name_or_path):
        return load(name_or_path)
    raise ValueError(f"unknown chip {name_or_path!r}: a preset name ({', '.join(PRESETS)}) or the path of a JSON spec")


def overlay_properties(props: dict[str, Any], spec: ChipSpec) -> dict[str, Any]:
    """Device properties as the runtime reports them, with the chip's cores and figures added."""
    out = dict(props)
    out["multi_processor_count"] = spec.cores
    out["chip"] = spec.name
    out["peak_flops"] = {"fp32": spec.peak_flops_fp32, "bf16": spec.peak_flops_bf16, "int8": spec.peak_flops_int8}
    out["memory_bandwidth"] = spec.memory_bandwidth
    return out
