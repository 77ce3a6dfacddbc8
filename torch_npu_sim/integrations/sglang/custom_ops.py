"""SGLang's Python custom ops on npusim.

SGLang registers its Python-bodied custom ops (the TP all-reduce among them) for the CUDA
dispatch key only, or for PrivateUse1 when it runs on Ascend. Their bodies are plain torch and
c10d calls, so on npusim the same body serves: each such op gets a PrivateUse1 kernel that
redispatches to its CUDA one. Ops registered later (model layers import theirs lazily) are
covered by wrapping SGLang's registration function.
"""
from __future__ import annotations

import torch

_LIBRARY = "sglang"
_impl_library: torch.library.Library | None = None
_covered: set[str] = set()


def _library() -> torch.library.Library:
    global _impl_library
    if _impl_library is None:
        _impl_library = torch.library.Library(_LIBRARY, "IMPL")  # kept alive: it owns the kernels
    return _impl_library


def _redispatch_to_cuda(op):
    cuda_only = torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)

    def kernel(*args, **kwargs):
        return op.redispatch(cuda_only, *args, **kwargs)

    return kernel


def cuda_only_ops() -> list[str]:
    """SGLang ops with a CUDA kernel and no PrivateUse1 one ("sglang::name" overload names)."""
    cuda = set(torch._C._dispatch_get_registrations_for_dispatch_key("CUDA"))
    npusim = set(torch._C._dispatch_get_registrations_for_dispatch_key("PrivateUse1"))
    return sorted(n for n in cuda - npusim if n.startswith(f"{_LIBRARY}::"))


def cover_registered_ops() -> list[str]:
    """Gives every CUDA-only SGLang op a PrivateUse1 kernel; returns the names covered now."""
    added = []
    for name in cuda_only_ops():
        if name in _covered:
            continue
        op_name, _, overload = name.partition("::")[2].partition(".")
        op = getattr(getattr(torch.ops, _LIBRARY), op_name)
        overload_packet = getattr(op, overload or "default")
        _library().impl(name.partition("::")[2], _redispatch_to_cuda(overload_packet), "PrivateUse1")
        _covered.add(name)
        added.append(name)
    return added


def register_sglang_ops_for_npusim() -> None:
    """Covers the ops registered so far and, through SGLang's registration function, later ones."""
    from sglang.srt.utils import common

    cover_registered_ops()
    register = common.direct_register_custom_op
    if getattr(register, "_npusim_covered", False):
        return

    def direct_register_custom_op(*args, **kwargs):
        register(*args, **kwargs)
        cover_registered_ops()

    direct_register_custom_op._npusim_covered = True
    common.direct_register_custom_op = direct_register_custom_op
