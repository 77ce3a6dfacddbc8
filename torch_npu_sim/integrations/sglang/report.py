"""Where an SGLang worker keeps its model and KV cache, and what its decode graphs did (captured
batch sizes, replays per size), asked of every scheduler over SGLang's RPC.

SGLang runs each TP rank's scheduler in its own process; `Engine.collective_rpc(method)` calls
`Scheduler.<method>` in all of them. The plugin (entry point group `sglang.srt.plugins`) adds
`npusim_device_report`, which writes one JSON file per rank, since SGLang's RPC returns no values.
"""
from __future__ import annotations

import json
import os

REPORT_METHOD = "npusim_device_report"


def device_report(scheduler) -> dict:
    import torch

    runner = scheduler.tp_worker.model_runner
    pool = runner.token_to_kv_pool
    kv = [t for t in (getattr(pool, "k_buffer", None) or []) + (getattr(pool, "v_buffer", None) or [])]
    device = torch.device(runner.device, runner.gpu_id) if isinstance(runner.device, str) else runner.device
    graph_runner = getattr(runner, "decode_cuda_graph_runner", None)  # None: decoding eagerly
    report = dict(tp_rank=runner.tp_rank, device=str(device),
                  parameter_devices=sorted({str(p.device) for p in runner.model.parameters()}),
                  kv_cache_devices=sorted({str(t.device) for t in kv}),
                  kv_cache_bytes=sum(t.numel() * t.element_size() for t in kv),
                  kv_pool=type(pool).__qualname__,
                  allocator=type(runner.token_to_kv_pool_allocator).__qualname__,
                  attention_backend=type(runner.attn_backend).__qualname__,
                  decode_graph_runner=type(graph_runner).__qualname__ if graph_runner is not None else None)
    if device.type == "npusim":
        report.update(npusim_memory_allocated=torch.npusim.memory_allocated(device),
                      npusim_kernel_launches=torch.npusim.launch_count(),
                      dist_backend=torch.distributed.get_backend() if torch.distributed.is_initialized() else None)
        from .graphs import GraphStats

        report.update(GraphStats.as_dict())
    return report


def npusim_device_report(self, directory: str) -> None:
    """Scheduler method (added by the plugin): writes this rank's report to `directory`."""
    with open(os.path.join(directory, f"rank{self.tp_worker.model_runner.tp_rank}.json"), "w") as f:
        json.dump(device_report(self), f)


def read_reports(directory: str) -> list[dict]:
    names = sorted(n for n in os.listdir(directory) if n.startswith("rank") and n.endswith(".json"))
    reports = []
    for name in names:
        with open(os.path.join(directory, name)) as f:
            reports.append(json.load(f))
    return sorted(reports, key=lambda r: r["tp_rank"])
