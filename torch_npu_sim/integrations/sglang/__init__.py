"""SGLang on npusim: an out-of-tree SGLang platform.

Installed into SGLang's own environment by scripts/install_sglang.sh, SGLang finds it through
the entry point `npusim` of the group `sglang.srt.platforms` (and its hooks through the group
`sglang.srt.plugins`), and serves on npusim devices with `--device npusim`.

    platform.py           NpuSimPlatform: memory, KV pool and allocator, attention, distributed backend
    server_args.py        npusim's defaults for SGLang's CUDA-only choices; decode graphs when asked for
    attention.py          SGLang's torch-native attention, capturable in decode graphs
    graphs.py             SGLang's decode graph runner on npusim graphs
    internals.py          the SGLang versions and internals this integration relies on
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


def _torch_native_attention(model_runner):
    from .attention import create_attention_backend

    return create_attention_backend(model_runner)


def register_hooks() -> None:
    """The `sglang.srt.plugins` entry point: adds the device-report RPC to SGLang's scheduler, lets
    a decode graph asked for on npusim survive SGLang's torch_native rule, and makes npusim's
    torch_native attention the graph-capturable one when decode graphs are on."""
    from sglang.srt.layers.attention.attention_registry import ATTENTION_BACKENDS
    from sglang.srt.managers.scheduler import Scheduler
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    from .report import REPORT_METHOD, npusim_device_report
    from .server_args import ATTENTION_RULE, keep_requested_decode_graph

    setattr(Scheduler, REPORT_METHOD, npusim_device_report)
    HookRegistry.register(ATTENTION_RULE, keep_requested_decode_graph, HookType.AROUND)
    ATTENTION_BACKENDS["torch_native"] = _torch_native_attention
