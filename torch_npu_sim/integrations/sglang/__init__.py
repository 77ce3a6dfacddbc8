"""SGLang on npusim: an out-of-tree SGLang platform.

Installed into SGLang's own environment by scripts/install_sglang.sh, SGLang finds it through
the entry point `npusim` of the group `sglang.srt.platforms` (and its hooks through the group
`sglang.srt.plugins`), and serves on npusim devices with `--device npusim`.

    platform.py           NpuSimPlatform: memory, KV pool and allocator, attention, distributed backend
    server_args.py        npusim's defaults for SGLang's CUDA-only choices
    allocator.py          SGLang's paged KV allocator with torch-native slot math
    custom_ops.py         SGLang's Python custom ops (the TP all-reduce) given npusim kernels
    torchvision_compat.py torchvision's import on a CPU torch
    report.py             where each worker keeps its model and KV cache (an RPC)
    offline.py            offline generation in SGLang's environment, for tests and benchmarks
"""


def register():
    """SGLang's platform discovery: the platform's qualname when an npusim device exists, else None."""
    try:
        import torch
        import torch_npu_sim  # noqa: F401  (registers the device)
    except ImportError:
        return None
    if not (hasattr(torch, "npusim") and torch.npusim.is_available()):
        return None
    from .torchvision_compat import declare_missing_torchvision_ops

    declare_missing_torchvision_ops()  # before SGLang's imports reach torchvision
    return "torch_npu_sim.integrations.sglang.platform.NpuSimPlatform"


def register_hooks() -> None:
    """The `sglang.srt.plugins` entry point: adds the device-report RPC to SGLang's scheduler."""
    from sglang.srt.managers.scheduler import Scheduler

    from .report import REPORT_METHOD, npusim_device_report

    setattr(Scheduler, REPORT_METHOD, npusim_device_report)
