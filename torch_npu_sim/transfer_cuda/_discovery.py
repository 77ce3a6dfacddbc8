"""Which torch callables take a device, derived from torch itself (no hand-written list).

Three sources, each read from the installed torch:

* ATen's schema registry: every ``aten::`` operator with a ``Device`` argument, and the
  Python callables that expose it (``torch.<op>``, ``torch.Tensor.<op>``, ``torch.fft.<op>``...);
* torch's built-in (C) callables whose documented signature has a ``device`` parameter
  (``torch.tensor``, ``torch.asarray``, ``Tensor.new_tensor``, ``torch.Stream``...);
* Python-level callables of torch's public modules whose signature has a device parameter
  (``Module.to_empty``, ``torch.load``'s ``map_location``, ``GradScaler(device)``...).
"""
from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass

import torch

from ._devices import DEVICE_PARAMETERS, REAL_DEVICE

# sub-namespaces torch generates from ATen's python_module (fft_fftfreq -> torch.fft.fftfreq)
_SUBMODULE_PREFIXES = ("fft", "linalg", "special", "nested", "sparse")

# ATen overloads with a Device argument that no Python callable takes a device through
NO_PYTHON_DEVICE_ARGUMENT = {
    "eq": "TorchScript's comparison of two devices (Python compares torch.device objects with ==)",
    "ne": "TorchScript's comparison of two devices (Python compares torch.device objects with !=)",
}

# public modules whose Python-level callables are searched for device parameters
PYTHON_NAMESPACES = ("torch", "torch.serialization", "torch.random", "torch.amp", "torch.amp.autocast_mode",
                     "torch.amp.grad_scaler", "torch.utils.data", "torch.nn.parallel", "torch.distributed",
                     "torch.distributed.device_mesh", "torch.nn.utils", "torch.utils.checkpoint")
# classes whose Python-level methods are searched too
PYTHON_CLASSES = ("torch.Tensor", "torch.nn.Module", "torch.UntypedStorage", "torch.TypedStorage")

_DOC_DEVICE = re.compile(r"[(,*]\s*device\s*[=,):]")


@dataclass(frozen=True)
class Callable_:
    owner: object  # module or class holding the callable
    name: str
    where: str  # the owner's public name
    builtin: bool  # a C callable or type (no Python signature)
    # Python-level: the mapped parameters, as (position or None when keyword-only, name)
    parameters: tuple[tuple[int | None, str], ...] = ()

    @property
    def label(self) -> str:
        return f"{self.where}.{self.name}"

    @property
    def value(self):
        return inspect.getattr_static(self.owner, self.name) if isinstance(self.owner, type) \
            else getattr(self.owner, self.name)


def aten_device_ops() -> dict[str, list[str]]:
    """{op name: overloads} of every public aten:: operator with a Device argument."""
    ops: dict[str, list[str]] = {}
    for schema in torch._C._jit_get_all_schemas():
        namespace, _, name = schema.name.partition("::")
        if namespace != "aten" or name.startswith("_"):
            continue
        if any(str(argument.type) in ("Device", "Optional[Device]") for argument in schema.arguments):
            ops.setdefault(name, []).append(schema.overload_name or "default")
    return ops


def private_aten_device_ops() -> list[str]:
    """aten::_* operators with a Device argument (internal: not called by user code)."""
    return sorted({schema.name for schema in torch._C._jit_get_all_schemas()
                   if schema.name.startswith("aten::_")
                   and any(str(a.type) in ("Device", "Optional[Device]") for a in schema.arguments)})


def exposures(op: str) -> list[Callable_]:
    """The public Python callables that expose ATen operator `op`."""
    candidates = [(torch, "torch", op), (torch.Tensor, "torch.Tensor", op)]
    prefix, _, rest = op.partition("_")
    if prefix in _SUBMODULE_PREFIXES and rest:
        candidates.append((importlib.import_module(f"torch.{prefix}"), f"torch.{prefix}", rest))
    found = []
    for owner, where, name in candidates:
        if _public_callable(owner, name):
            found.append(_describe(owner, where, name))
    return found


def documented_builtins() -> list[Callable_]:
    """torch's and Tensor's C callables whose documented signature has device=."""
    found = []
    for owner, where in ((torch, "torch"), (torch.Tensor, "torch.Tensor")):
        for name in dir(owner):
            if not _public_callable(owner, name):
                continue
            value = getattr(owner, name)
            if isinstance(value, type) and issubclass(value, BaseException) or _python_signature(value):
                continue
            doc = value.__doc__ if isinstance(value.__doc__, str) else ""
            signature = doc.strip().partition("\n")[0]  # "zeros(*size, ..., device=None, ...) -> Tensor"
            if signature.startswith(f"{name}(") and _DOC_DEVICE.search(signature):
                found.append(_describe(owner, where, name))
    return found


def python_level() -> list[Callable_]:
    """Python-level callables and classes of PYTHON_NAMESPACES / PYTHON_CLASSES with a device parameter."""
    found = []
    owners = [(importlib.import_module(name), name) for name in PYTHON_NAMESPACES]
    owners += [(_resolve(name), name) for name in PYTHON_CLASSES]
    for owner, where in owners:
        for name in dir(owner):
            if not _public_callable(owner, name):
                continue
            value = inspect.getattr_static(owner, name) if isinstance(owner, type) else getattr(owner, name)
            if isinstance(owner, type) and isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, type):
                value = value.__dict__.get("__init__")
                if value is None:
                    continue
            signature = _python_signature(value)
            if signature is None:
                continue
            mapped = DEVICE_PARAMETERS | ({"backend"} if where.startswith("torch.distributed") else set())
            parameters = tuple((i if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) else None, p.name)
                               for i, p in enumerate(signature.parameters.values()) if p.name in mapped)
            if parameters:
                found.append(Callable_(owner, name, where, False, parameters))
    return found


def names_a_device_type(name: str) -> bool:
    """Tensor.cuda, Module.xpu, ...: methods named after a device type take that type's index."""
    try:
        REAL_DEVICE(name)
    except RuntimeError:
        return False
    return True


def _public_callable(owner, name: str) -> bool:
    if name.startswith("_"):
        return False
    try:
        value = getattr(owner, name)
    except AttributeError:
        return False
    return callable(value)


def _describe(owner, where: str, name: str) -> Callable_:
    return Callable_(owner, name, where, _python_signature(getattr(owner, name)) is None)


def _python_signature(value):
    if not (inspect.isfunction(value) or inspect.ismethod(value)):
        return None
    try:
        return inspect.signature(value)
    except (TypeError, ValueError):
        return None


def _resolve(dotted: str):
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)
