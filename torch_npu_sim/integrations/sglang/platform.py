"""NpuSimPlatform: what SGLang asks of a device, answered by npusim.

SGLang reaches an out-of-tree platform through `current_platform.is_out_of_tree()` at each
place where the device matters: memory, the KV pool and its allocator, the attention backend,
the decode graph runner and its graph backend (graphs.py), the compile backend and the
distributed backend. Streams and events it gets from `torch.get_device_module("npusim")`, which
is `torch.npusim`.
"""
from __future__ import annotations

from typing import Optional

import torch
from sglang.srt.platforms.device_mixin import DeviceCapability, DeviceMixin, PlatformEnum
from sglang.srt.platforms.interface import SRTPlatform

from .internals import check_sglang

DEVICE_TYPE = "npusim"
# SGLang's attention backend written in plain torch ops; the others are CUDA/Triton kernels
ATTENTION_BACKEND = "torch_native"


class NpuSimDeviceMixin(DeviceMixin):
    """Device identity and memory, from torch.npusim."""

    _enum = PlatformEnum.OOT
    device_name = DEVICE_TYPE
    device_type = DEVICE_TYPE

    def get_device_total_memory(self, device_id: int = 0) -> int:
        return int(torch.npusim.get_device_properties(device_id).total_memory)

    def get_current_memory_usage(self, device: Optional[torch.device] = None) -> float:
        return float(torch.npusim.max_memory_allocated(device))

    def is_pin_memory_available(self, device=None) -> bool:
        return not (device is not None and str(device) == "cpu")

    def get_device(self, local_rank: int) -> torch.device:
        return torch.device(DEVICE_TYPE, local_rank)

    def set_device(self, device: torch.device) -> None:
        torch.npusim.set_device(device)

    def get_device_name(self, device_id: int = 0) -> str:
        return torch.npusim.get_device_name(device_id)

    def get_device_uuid(self, device_id: int = 0) -> str:
        return f"{DEVICE_TYPE}-{device_id}"

    def get_device_capability(self, device_id: int = 0) -> DeviceCapability:
        # No CUDA compute capability: (0, 0) keeps SGLang off every sm-gated kernel
        return DeviceCapability(0, 0)

    def empty_cache(self) -> None:
        torch.npusim.empty_cache()

    def synchronize(self) -> None:
        torch.npusim.synchronize()

    def get_available_memory(self, device_id: int = 0) -> tuple[int, int]:
        return torch.npusim.mem_get_info(device_id)

    def get_torch_distributed_backend_str(self) -> str:
        return "npusim"

    @classmethod
    def seed_everything(cls, seed: int | None = None) -> None:
        if seed is not None:
            super().seed_everything(seed)
            torch.npusim.manual_seed_all(seed)


class NpuSimPlatform(NpuSimDeviceMixin, SRTPlatform):
    """SGLang's SRT platform for npusim devices."""

    def __init__(self) -> None:
        check_sglang()
        super().__init__()

    def apply_server_args_defaults(self, server_args) -> None:
        from .server_args import apply_npusim_defaults

        apply_npusim_defaults(server_args)

    def get_default_attention_backend(self) -> str:
        return ATTENTION_BACKEND

    def get_dispatch_key_name(self) -> str:
        return "native"

    def get_mha_kv_pool_cls(self) -> type:
        from sglang.srt.mem_cache.memory_pool import MHATokenToKVPool

        return MHATokenToKVPool

    def get_paged_allocator_cls(self) -> type:
        from .allocator import NpuSimTokenToKVPoolAllocator

        return NpuSimTokenToKVPoolAllocator

    def support_cuda_graph(self) -> bool:
        # decode graphs, when asked for (server_args.keep_requested_decode_graph); eager by default
        return True

    def get_graph_runner_cls(self) -> type:
        from .graphs import NpuSimDecodeGraphRunner

        return NpuSimDecodeGraphRunner

    def get_full_graph_backend_cls(self) -> type:
        from .graphs import NpuSimFullGraphBackend

        return NpuSimFullGraphBackend

    def get_compile_backend(self, mode: str | None = None) -> str:
        return "inductor"

    def init_backend(self) -> None:
        from .custom_ops import register_sglang_ops_for_npusim

        register_sglang_ops_for_npusim()
