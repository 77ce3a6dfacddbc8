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
