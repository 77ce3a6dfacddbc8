"""npusim's defaults for SGLang's server arguments (the platform's `apply_server_args_defaults`).

SGLang hands the platform a recorder of its arguments; fields assigned here become defaults
that the user's own flags still override. Each default replaces a CUDA-only choice.
"""
from __future__ import annotations

# field -> (value, why); applied only where the user left the field unset (None)
NPUSIM_DEFAULTS: dict[str, tuple[object, str]] = {
    "attention_backend": ("torch_native", "the attention backend written in torch ops"),
    "sampling_backend": ("pytorch", "flashinfer's sampling kernels are CUDA-only"),
    "grammar_backend": ("none", "xgrammar's mask kernels are CUDA/Triton-only"),
}


def apply_npusim_defaults(server_args) -> None:
    for field, (value, _why) in NPUSIM_DEFAULTS.items():
        if getattr(server_args, field, None) is None:
            setattr(server_args, field, value)


# SGLang's attention-backend rule that turns graphs off for torch_native (the plugin wraps it)
ATTENTION_RULE = "sglang.srt.arg_groups.attention_hook.handle_attention_backend_compatibility"


def keep_requested_decode_graph(rule, server_args) -> None:
    """Around SGLang's ATTENTION_RULE: on npusim, a decode graph the user asked for explicitly
    (`--cuda-graph-backend-decode full`, or `cuda_graph_config`) survives the rule's turning graphs
    off for torch_native attention, since npusim's torch_native backend captures decode batches.
    Unasked, graphs stay off and the engine decodes eagerly, as before; prefill graphs stay off."""
    from sglang.srt.arg_groups.model_override_base import attention_backends_of
    from sglang.srt.arg_groups.overrides import declare_resolution, resolving_view
    from sglang.srt.model_executor.cuda_graph_config import Backend, Phase, with_phase

    requested = resolving_view(server_args).cuda_graph_config
    rule(server_args)
    view = resolving_view(server_args)
    asked = (Phase.DECODE, "backend") in getattr(server_args, "_cuda_graph_config_locked", ())
    if view.device != "npusim" or not asked or requested is None or requested.decode.backend == Backend.DISABLED:
        return
    if requested.decode.backend != Backend.FULL:
        raise ValueError(f"npusim captures decode graphs with the 'full' backend only, not "
                         f"{requested.decode.backend!r}")
    if attention_backends_of(view) != ("torch_native", "torch_native") \
            or view.cuda_graph_config.decode.backend != Backend.DISABLED:
        return  # another attention backend: SGLang's own rules decide
    declare_resolution(server_args, "npusim_decode_graph", cuda_graph_config=with_phase(
        view.cuda_graph_config, Phase.DECODE, backend=Backend.FULL))
