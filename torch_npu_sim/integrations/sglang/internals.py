"""The SGLang versions this integration was checked on, the guard that refuses others, and the
SGLang internals it relies on."""
from __future__ import annotations

CHECKED_SGLANG_VERSIONS: tuple[str, ...] = ("0.5.21",)


class SglangVersionError(RuntimeError):
    """The installed SGLang is not one the npusim integration was checked on."""


def sglang_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("sglang")


def check_sglang() -> None:
    version = sglang_version()
    if version not in CHECKED_SGLANG_VERSIONS:
        raise SglangVersionError(
            f"npusim's SGLang integration was checked on SGLang {', '.join(CHECKED_SGLANG_VERSIONS)} only, "
            f"not {version}: install it with bash scripts/install_sglang.sh")


# What the integration uses of SGLang beyond its documented platform interface, each with why.
# "module:Name.attr" is an importable attribute; "module:Class#attr" an instance attribute that
# Class.__init__ assigns (or a dataclass field). tests/sglang_env/test_internals.py fails, naming
# each one that is gone.
SGLANG_INTERNALS: dict[str, str] = {
    # platform.py, allocator.py, custom_ops.py, report.py
    "sglang.srt.platforms.interface:SRTPlatform.get_full_graph_backend_cls": "the decode graph backend",
    "sglang.srt.platforms.interface:SRTPlatform.get_graph_runner_cls": "the decode graph runner",
    "sglang.srt.mem_cache.memory_pool:MHATokenToKVPool": "the KV pool on npusim",
    "sglang.srt.mem_cache.allocator.paged:PagedTokenToKVPoolAllocator": "subclassed: torch-native slot math",
    "sglang.srt.mem_cache.allocator.paged:alloc_extend_naive": "the paged allocator's torch-native path",
    "sglang.srt.mem_cache.allocator.token:TokenToKVPoolAllocator": "page size 1",
    "sglang.srt.utils:get_num_new_pages": "the paged allocator's page count",
    "sglang.srt.utils.common:direct_register_custom_op": "wrapped: npusim kernels for SGLang's custom ops",
    "sglang.srt.managers.scheduler:Scheduler": "the device-report RPC is added to it",
    # server_args.py: decode graphs asked for survive the torch_native rule
    "sglang.srt.plugins.hook_registry:HookRegistry.register": "wraps the torch_native rule",
    "sglang.srt.plugins.hook_registry:HookType.AROUND": "wraps the torch_native rule",
    "sglang.srt.arg_groups.attention_hook:handle_attention_backend_compatibility": "the rule wrapped",
    "sglang.srt.arg_groups.overrides:declare_resolution": "declares the decode graph kept",
    "sglang.srt.arg_groups.overrides:resolving_view": "reads the configuration being resolved",
    "sglang.srt.arg_groups.model_override_base:attention_backends_of": "(prefill, decode) attention",
    "sglang.srt.model_executor.cuda_graph_config:with_phase": "the decode phase's backend restored",
    "sglang.srt.model_executor.cuda_graph_config:Backend.FULL": "the one decode graph backend npusim has",
    "sglang.srt.model_executor.cuda_graph_config:Phase.DECODE": "the phase kept",
    "sglang.srt.runtime_context:get_exec": "the published graph configuration",
    "sglang.srt.runtime_context:get_flags": "torch.compile with decode graphs refused",
    # attention.py: torch_native's factory and decode attention
    "sglang.srt.layers.attention.attention_registry:ATTENTION_BACKENDS": "torch_native's factory replaced",
    "sglang.srt.layers.attention.torch_native_backend:TorchNativeAttnBackend._run_sdpa_forward_decode":
        "rerun by the host node at each replay",
    "sglang.srt.layers.attention.torch_native_backend:TorchNativeAttnBackend#token_to_kv_pool": "KV buffers",
    "sglang.srt.layers.attention.torch_native_backend:TorchNativeAttnBackend#req_to_token_pool": "KV slots",
    "sglang.srt.layers.attention.torch_native_backend:TorchNativeAttnBackend#use_sliding_window_kv_pool":
        "sliding-window pools refused",
    "sglang.srt.mem_cache.memory_pool:KVWriteLoc": "the KV write recorded in the graph",
    "sglang.srt.model_executor.forward_batch_info:ForwardBatch#req_pool_indices": "read at each replay",
    "sglang.srt.model_executor.forward_batch_info:ForwardBatch#seq_lens": "read at each replay",
    "sglang.srt.model_executor.forward_batch_info:ForwardBatch#out_cache_loc": "the KV write's slots",
    "sglang.srt.model_executor.forward_batch_info:ForwardBatch#encoder_lens": "cross-attention refused",
    # graphs.py: the decode graph runner and its graph backend
    "sglang.srt.model_executor.runner.decode_cuda_graph_runner:DecodeCudaGraphRunner.capture": "subclassed",
    "sglang.srt.model_executor.runner_backend.full_cuda_graph_backend:FullCudaGraphBackend.replay":
        "subclassed: replays counted",
    "sglang.srt.model_executor.runner_backend.full_cuda_graph_backend:FullCudaGraphBackend#_graphs":
        "captured graphs, by shape",
    "sglang.srt.model_executor.runner_backend.full_cuda_graph_backend:FullCudaGraphBackend#_outputs":
        "captured outputs, by shape",
    "sglang.srt.model_executor.runner_backend.full_cuda_graph_backend:FullCudaGraphBackend#_pool": "graph pool",
    "sglang.srt.model_executor.runner_backend.full_cuda_graph_backend:FullCudaGraphBackend#_capture_stream":
        "capture stream",
    "sglang.srt.model_executor.runner_backend.full_cuda_graph_backend:FullCudaGraphBackend#_tp_group":
        "barrier between warm-ups",
    "sglang.srt.model_executor.runner_backend.full_cuda_graph_backend:FullCudaGraphBackend#_device_module":
        "synchronize between warm-ups",
    "sglang.srt.model_executor.runner_backend.full_cuda_graph_backend:FullCudaGraphBackend#_memory_saver_adapter":
        "the memory saver refused",
    "sglang.srt.distributed.parallel_state:_groups": "PyNccl without NCCL detached while capturing",
    "sglang.srt.distributed.parallel_state:GroupCoordinator#pynccl_comm": "detached while capturing",
    "sglang.srt.distributed.device_communicators.pynccl:PyNcclCommunicator#available": "NCCL found or not",
}


def resolve_internal(spec: str):
    """The object `spec` names (see SGLANG_INTERNALS); raises AttributeError or ImportError when gone.
    For an instance attribute, returns the class after checking its __init__ assigns it."""
    import importlib
    import inspect

    module_name, _, path = spec.partition(":")
    path, _, instance_attr = path.partition("#")
    obj = importlib.import_module(module_name)
    for name in path.split("."):
        obj = getattr(obj, name)
    if instance_attr and instance_attr not in getattr(obj, "__dataclass_fields__", {}):
        try:
            init = inspect.getsource(obj.__init__)
        except OSError:  # generated (a dataclass's): its fields were checked above
            init = ""
        if f"self.{instance_attr} =" not in init and f"self.{instance_attr}:" not in init:
            raise AttributeError(f"{path}.__init__ no longer sets self.{instance_attr}")
    return obj


def missing_internals(specs=None) -> list[str]:
    """The entries of SGLANG_INTERNALS (or `specs`) this SGLang lacks, each with the error."""
    missing = []
    for spec in specs if specs is not None else SGLANG_INTERNALS:
        try:
            resolve_internal(spec)
        except (ImportError, AttributeError) as e:
            missing.append(f"{spec}: {e}")
    return missing
