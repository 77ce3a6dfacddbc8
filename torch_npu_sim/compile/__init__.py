"""torch.compile for npusim.

Two ways in, one pipeline (AOTAutograd, then Inductor's C++ codegen; Triton kernels in
Triton's interpreter with ``options={"npusim_codegen": "triton"}``, see triton_codegen.py):

* ``torch.compile(model, backend="npusim")`` names :func:`npusim_backend` through the
  ``torch_dynamo_backends`` entry point, so it works without importing this package.
* ``torch.compile(model)`` (Inductor) on npusim tensors works because Inductor and
  Dynamo know the device: a ``DeviceInterface``, device op overrides, and a scheduling
  plus wrapper codegen registered with ``register_backend_for_device``.

Compiled kernels take raw data pointers; npusim memory is host memory in CPU mode, so
Inductor's CPU C++ kernels run on it directly (zero-copy), while every buffer the
wrapper allocates is an npusim tensor from the npusim caching allocator.

Importing Dynamo or Inductor costs seconds, so :func:`register` only arranges for the
registration to happen when Torch itself imports them.
"""
from __future__ import annotations

import importlib.abc
import sys
import threading
import warnings
from typing import Any, Callable

_DYNAMO_DEVICE_INTERFACE = "torch._dynamo.device_interface"
# every Inductor compilation imports compile_fx first; once it is loaded, importing
# Inductor's codegen modules is no longer circular
_INDUCTOR_COMPILE_FX = "torch._inductor.compile_fx"
# FlexAttention's front end and its HOP (flex_attention.py), patched once torch loads them
_FLEX_FRONT_END = "torch.nn.attention.flex_attention"
_FLEX_HOP = "torch._higher_order_ops.flex_attention"


def register() -> None:
    """Register the device with Dynamo and Inductor, now or when Torch imports them."""
    _after_import(_DYNAMO_DEVICE_INTERFACE, _register_device_interface)
    _after_import(_INDUCTOR_COMPILE_FX, _register_inductor)
    _after_import(_FLEX_FRONT_END, _install_flex_front_end)
    _after_import(_FLEX_HOP, _install_flex_autograd)


def register_now() -> None:
    """Import Dynamo and Inductor and register the device with both (idempotent); raises
    what registration raises, where the import-time hooks can only warn."""
    import torch._dynamo.device_interface  # noqa: F401
    import torch._inductor.compile_fx  # noqa: F401

    _register_device_interface(None)
    _register_inductor(None)


def npusim_backend(gm, example_inputs, *, mode: str | None = None, options: dict[str, Any] | None = None):
    """Dynamo backend ``"npusim"``: AOTAutograd plus Inductor with npusim registered.

    ``mode`` and ``options`` mean what they mean for Inductor
    (``torch.compile(m, backend="npusim", options={"max_autotune": True})``), plus
    ``options={"npusim_codegen": "triton"}``: Triton kernels run by Triton's interpreter on
    npusim memory instead of the default C++ kernels (``"cpp"``; see triton_codegen.py).
    """
    register_now()
    import torch._inductor
    from torch._inductor.compile_fx import compile_fx

    from . import triton_codegen

    codegen, options = triton_codegen.parse(options)
    config_patches: dict[str, Any] = {}
    if mode is not None and mode != "default":
        config_patches.update(torch._inductor.list_mode_options(mode))
    if options:
        unknown = sorted(set(options) - set(torch._inductor.list_options()))
        if unknown:
            raise RuntimeError(f"npusim backend: unknown Inductor options {unknown}")
        config_patches.update(options)
    if codegen == "triton":
        with triton_codegen.triton_mode():
            return compile_fx(gm, example_inputs, inner_compile=triton_codegen.inner_compile(),
                              config_patches=config_patches or None)
    return compile_fx(gm, example_inputs, config_patches=config_patches or None)


def _register_device_interface(_module) -> None:
    from .device_interface import register as register_interface

    register_interface()


def _register_inductor(_module) -> None:
    from .inductor import register as register_inductor

    register_inductor()


def _install_flex_front_end(_module) -> None:
    from .flex_attention import install_front_end

    install_front_end()


def _install_flex_autograd(_module) -> None:
    from .flex_attention import install_autograd

    install_autograd()


# --- run code right after a module is imported --------------------------------------
# Python has no public post-import hook; a meta-path finder that wraps the found
# loader is the standard way to get one without touching the imported module.

_hooks_lock = threading.Lock()
_pending: dict[str, list[Callable[[Any], None]]] = {}


def _after_import(name: str, callback: Callable[[Any], None]) -> None:
    with _hooks_lock:
        module = sys.modules.get(name)
        if module is None:
            if callback not in _pending.setdefault(name, []):
                _pending[name].append(callback)
            if not any(isinstance(f, _PostImportFinder) for f in sys.meta_path):
                sys.meta_path.insert(0, _PostImportFinder())
            return
    _run_callback(name, callback, module)


def _run_callback(name: str, callback: Callable[[Any], None], module) -> None:
    try:
        callback(module)
    except Exception as error:  # a failed registration must not break `import torch`
        warnings.warn(f"torch_npu_sim: registering npusim with {name} failed: {error!r}", RuntimeWarning)


class _LoaderWithCallbacks(importlib.abc.Loader):
    def __init__(self, loader, name: str, callbacks: list[Callable[[Any], None]]):
        self._loader = loader
        self._name = name
        self._callbacks = callbacks

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        for callback in self._callbacks:
            _run_callback(self._name, callback, module)

    def __getattr__(self, attr):  # get_source, get_filename, ... of the real loader
        return getattr(self._loader, attr)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        with _hooks_lock:
            if name not in _pending:
                return None
            callbacks = _pending.pop(name)
            if not _pending:
                sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
        spec = None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _LoaderWithCallbacks(spec.loader, name, callbacks)
        return spec
