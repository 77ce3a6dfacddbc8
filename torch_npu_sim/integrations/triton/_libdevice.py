"""``libdevice`` math for kernels interpreted on npusim memory.

``triton.language.extra.libdevice`` holds stubs (``def exp(arg0): ...``) that the Triton
compiler replaces with a GPU's device library; Triton's interpreter does not, so a call
returns None and the kernel fails ("'NoneType' object has no attribute 'type'"). Inductor
emits such calls (``libdevice.exp``, ``libdevice.tanh``, ...). While a kernel is interpreted
on npusim memory the stubs are replaced by ``tl.math``'s function of the same name (which
the interpreter implements) or by NumPy's elementwise function; other stubs are left alone.
"""
from __future__ import annotations

import numpy as np
import triton.language as tl
from triton.language.extra import libdevice
from triton.runtime.interpreter import TensorHandle

# libdevice names tl.math also has: called through tl.math (patched by the interpreter) at call time
_VIA_TL_MATH = ("abs", "ceil", "cos", "div_rn", "erf", "exp", "exp2", "fdiv", "floor", "fma", "log", "log2",
                "rsqrt", "sin", "sqrt", "sqrt_rn")
# libdevice names computed with NumPy on the interpreter's arrays
_VIA_NUMPY = {
    "tanh": np.tanh, "log1p": np.log1p, "expm1": np.expm1, "log10": np.log10, "tan": np.tan,
    "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh,
    "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh, "trunc": np.trunc, "nearbyint": np.rint,
    "rint": np.rint, "round": np.round, "pow": np.power, "atan2": np.arctan2, "copysign": np.copysign,
    "fmod": np.fmod, "hypot": np.hypot, "nextafter": np.nextafter,
}
_PREDICATES = {"isnan": np.isnan, "isinf": np.isinf, "signbit": np.signbit, "isfinited": np.isfinite}


def _via_tl_math(name):
    def call(*args, **kwargs):
        return getattr(tl.math, name)(*args, **kwargs)

    call.__name__ = name
    return call


def _data(arg):
    return arg.handle.data if isinstance(arg, tl.tensor) else np.asarray(getattr(arg, "value", arg))


def _via_numpy(name, op, predicate=False):
    def call(*args, **_ignored):
        first = next(a for a in args if isinstance(a, tl.tensor))
        data = op(*(_data(a) for a in args))
        if predicate:
            block = first.type.with_element_ty(tl.int1) if first.type.is_block() else tl.int1
            return tl.tensor(TensorHandle(data.astype(np.bool_), tl.int1), block)
        scalar = first.handle.dtype.scalar
        return tl.tensor(TensorHandle(data.astype(first.handle.data.dtype), scalar), first.type)

    call.__name__ = name
    return call


def replacements() -> dict[str, object]:
    found = {name: _via_tl_math(name) for name in _VIA_TL_MATH if hasattr(libdevice, name)}
    found.update({name: _via_numpy(name, op) for name, op in _VIA_NUMPY.items() if hasattr(libdevice, name)})
    found.update({name: _via_numpy(name, op, predicate=True) for name, op in _PREDICATES.items()
                  if hasattr(libdevice, name)})
    return found


_REPLACEMENTS = replacements()
_originals: dict[str, object] = {}
_users = 0  # interpreted npusim launches running (under the interpreter module's lock)


def acquire() -> None:
    """Maps the stubs (reference counted; the caller holds a lock)."""
    global _users
    if _users == 0:
        for name, fn in _REPLACEMENTS.items():
            _originals[name] = getattr(libdevice, name)
            setattr(libdevice, name, fn)
    _users += 1


def release() -> None:
    global _users
    _users -= 1
    if _users == 0:
        for name, fn in _originals.items():
            setattr(libdevice, name, fn)
        _originals.clear()
