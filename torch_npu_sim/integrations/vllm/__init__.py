"""vLLM on npusim: an out-of-tree platform plugin.

Installed with the `vllm` extra (scripts/install_vllm.sh), vLLM finds it through the
entry point `npusim` in the group `vllm.platform_plugins` and, with no vLLM variable set,
serves on npusim devices. `VLLM_TARGET_DEVICE=cpu` still selects vLLM's own CPU platform.

    platform.py      NpuSimPlatform: what vLLM asks of a device (memory, backend, workers)
    worker.py        NpuSimWorker: one per rank, on npusim:<local_rank>
    model_runner.py  NpuSimModelRunner: inputs, KV cache and model on the device
    tiny_model.py    a tiny Llama with a local tokenizer (no model hub needed)
"""


def register() -> str | None:
    """The `vllm.platform_plugins` entry point: the platform's qualname when npusim devices exist."""
    try:
        import torch

        if not (hasattr(torch, "npusim") and torch.npusim.is_available()):
            return None
    except Exception:  # a broken install must not stop vLLM from choosing another platform
        return None
    return "torch_npu_sim.integrations.vllm.platform.NpuSimPlatform"
