"""Operators registered after npusim loads (other libraries' custom ops) get npusim's rule.

npusim runs an operator that has a CPU kernel and a CompositeExplicitAutograd(NonFunctional)
kernel through its zero-copy fallback, so the CPU kernel runs as on the CPU, instead of
letting the composite kernel run (csrc/aten/Fallback.h). The operators present at import are
routed then; the C++ side watches for operators defined later. Kernels added from Python
are seen here: after ``torch.library.Library.impl`` registers a CPU or composite kernel,
the operator is considered again, and before it registers a kernel for npusim itself
(PrivateUse1), npusim's routing is dropped so that the new kernel replaces nothing. After
``torch.ops.load_library`` the operators the library defined are considered at once
(otherwise on the next fallback call).
"""
from __future__ import annotations

import functools

import torch

from . import _C

_ROUTED_KEYS = frozenset({"CPU", "CompositeExplicitAutograd", "CompositeExplicitAutogradNonFunctional"})
_MARK = "_npusim_op_routing"


def _qualified_name(library, op_name) -> str | None:
    if isinstance(op_name, str):
        name = op_name
    else:
        schema = getattr(op_name, "_schema", None)  # an OpOverload
        if schema is None:
            return None
        name = schema.name + (f".{schema.overload_name}" if schema.overload_name else "")
    return name if "::" in name else f"{library.ns}::{name}"


def _wrap_impl(original):
    @functools.wraps(original)
    def impl(self, op_name, fn, dispatch_key="", *args, **kwargs):
        key = dispatch_key or getattr(self, "dispatch_key", "")
        name = _qualified_name(self, op_name)
        if name is not None and key == "PrivateUse1":
            _C._unroute_op(name)
        result = original(self, op_name, fn, dispatch_key, *args, **kwargs)
        if name is not None and key in _ROUTED_KEYS:
            _C._route_new_ops(name)
        return result

    setattr(impl, _MARK, True)
    return impl


def _wrap_load_library(original):
    @functools.wraps(original)
    def load_library(path):
        result = original(path)
        _C._route_new_ops()
        return result

    setattr(load_library, _MARK, True)
    return load_library


def install() -> None:
    library = torch.library.Library
    if not getattr(library.impl, _MARK, False):
        library.impl = _wrap_impl(library.impl)
    if not getattr(torch.ops.load_library, _MARK, False):
        torch.ops.load_library = _wrap_load_library(torch.ops.load_library)


def route_host_kernels(namespace: str) -> list[str]:
    """Routes every operator of ``namespace`` whose only kernel is a catch-all host kernel
    (it reads its tensors through raw pointers, as vLLM's CPU kernels do) through npusim's
    fallback, so that on npusim tensors it runs inside a launch: in stream order, inside
    protected memory's access scope, and recorded (not run) while a graph captures.
    Returns the operators routed now or before."""
    prefix = f"{namespace}::"
    return [name for name in torch._C._dispatch_get_all_op_names()
            if name.startswith(prefix) and _C._route_host_kernel(name)]
