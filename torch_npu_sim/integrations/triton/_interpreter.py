"""Triton's CPU interpreter launching kernels straight on npusim memory.

Triton 3.9's interpreter (``triton.runtime.interpreter.GridExecutor``) runs a kernel
over NumPy arrays built from raw addresses: every tensor argument becomes its
``data_ptr()``. For device tensors it first copies each argument's storage to the host
(``_init_args_hst``) and afterwards copies every storage back (``_restore_args_dev``).
npusim memory *is* host memory, so those copies are pure cost: launches whose tensors
are all npusim (or CPU) skip both and the kernel loads and stores npusim memory in place.

Kernels decorated with plain ``@triton.jit`` (no ``TRITON_INTERPRET=1`` at decoration
time) are compiled for a GPU by ``JITFunction.run``; with npusim tensor arguments the
launch is sent to an interpreted twin of the kernel instead, and other ``@triton.jit``
functions it calls are interpreted too, as are compiled-mode helpers an interpreted kernel
calls (Inductor's ``triton_helpers``), and ``libdevice`` math is mapped while it runs
(``_libdevice``). Launches without npusim tensors are untouched.
"""
from __future__ import annotations

import inspect
import threading

import torch
import triton
from triton.runtime import interpreter
from triton.runtime.jit import JITFunction, TensorWrapper

from ..._C import _call_with_device_access
from . import _libdevice

DEVICE_TYPE = "npusim"
CHECKED_TRITON = ("3.9",)
_MARK = "_npusim_patched"
_INTERPRETED = "_npusim_interpreted"

# the triton internals patched below, with the parameters the patches rely on
_TRITON_APIS = {
    "GridExecutor._init_args_hst": (interpreter.GridExecutor._init_args_hst, ("self", "args_dev", "kwargs")),
    "GridExecutor._restore_args_dev": (interpreter.GridExecutor._restore_args_dev,
                                       ("self", "args_dev", "args_hst", "kwargs", "kwargs_hst")),
    "JITFunction.run": (JITFunction.run, ("self", "grid", "warmup")),
    "GridExecutor.__call__": (interpreter.GridExecutor.__call__, ("self", "args_dev", "kwargs")),
}

_lock = threading.Lock()
_local = threading.local()  # depth of interpreted launches running on this thread
# launches that ran on npusim memory in place / that were rerouted from a compiled kernel
counters = {"zero_copy_launches": 0, "rerouted_launches": 0}


def check_triton() -> None:
    """Raises RuntimeError naming what differs when this triton is not the one checked."""
    version = ".".join(triton.__version__.split(".")[:2])
    if version not in CHECKED_TRITON:
        raise RuntimeError(f"torch_npu_sim.integrations.triton was checked with triton {CHECKED_TRITON} only, "
                           f"not {triton.__version__}; install the `triton` extra (triton==3.9.0)")
    for name, (fn, params) in _TRITON_APIS.items():
        fn = getattr(fn, "__wrapped__", fn)
        missing = [p for p in params if p not in inspect.signature(fn).parameters]
        if missing:
            raise RuntimeError(f"triton {triton.__version__}: {name} no longer takes {missing}")


def _tensors(value):
    """The tensors a kernel argument hands to the interpreter (tuples and descriptors included)."""
    if isinstance(value, TensorWrapper):
        value = value.base
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, tuple):
        for item in value:
            yield from _tensors(item)
    elif hasattr(value, "base") and hasattr(value, "block_shape"):  # a TensorDescriptor
        yield from _tensors(value.base)


def on_npusim_memory(args, kwargs) -> bool:
    """True when some tensor argument is npusim and every one is npusim or CPU: host addresses all."""
    devices = {t.device.type for value in (*args, *kwargs.values()) for t in _tensors(value)}
    return DEVICE_TYPE in devices and devices <= {DEVICE_TYPE, "cpu"}


class _InPlace(list):
    """Host arguments that are the device arguments themselves (nothing to copy back)."""


def _wrap_init_args_hst(original):
    def _init_args_hst(self, args_dev, kwargs):
        if on_npusim_memory(args_dev, kwargs):
            with _lock:
                counters["zero_copy_launches"] += 1
            return _InPlace(args_dev), dict(kwargs)
        return original(self, args_dev, kwargs)

    return _init_args_hst


def _wrap_restore_args_dev(original):
    def _restore_args_dev(self, args_dev, args_hst, kwargs, kwargs_hst):
        if isinstance(args_hst, _InPlace):
            return None  # the kernel stored into npusim memory directly
        return original(self, args_dev, args_hst, kwargs, kwargs_hst)

    return _restore_args_dev


def interpreted(kernel: JITFunction) -> interpreter.InterpretedFunction:
    """The interpreted twin of a compiled ``@triton.jit`` function (made once)."""
    twin = kernel.__dict__.get(_INTERPRETED)
    if twin is None:
        twin = interpreter.InterpretedFunction(kernel.fn)
        setattr(kernel, _INTERPRETED, twin)
    return twin


def _wrap_jit_run(original):
    def run(self, *args, grid, warmup, **kwargs):
        if not on_npusim_memory(args, kwargs):
            return original(self, *args, grid=grid, warmup=warmup, **kwargs)
        with _lock:
            counters["rerouted_launches"] += 1
        _local.depth = getattr(_local, "depth", 0) + 1
        try:
            return interpreted(self).run(*args, grid=grid, warmup=warmup, **kwargs)
        finally:
            _local.depth -= 1

    return run


def _wrap_executor_call(original):
    # an interpreted launch on npusim memory: @triton.jit helpers it calls are interpreted
    # (Inductor's triton_helpers are compiled-mode functions) and libdevice math is mapped
    def __call__(self, *args_dev, **kwargs):
        if not on_npusim_memory(args_dev, kwargs):
            return original(self, *args_dev, **kwargs)
        with _lock:
            _libdevice.acquire()
        _local.depth = getattr(_local, "depth", 0) + 1
        try:
            # the kernel reads and writes npusim memory in place: a kernel launch, inside a
            # device-access scope (NPUSIM_PROTECT_MEMORY=1 checks that)
            return _call_with_device_access(lambda: original(self, *args_dev, **kwargs))
        finally:
            _local.depth -= 1
            with _lock:
                _libdevice.release()

    return __call__


def _wrap_jit_call(original):
    # a @triton.jit helper called from a kernel being interpreted on this thread
    def __call__(self, *args, **kwargs):
        if getattr(_local, "depth", 0):
            return interpreted(self)(*args, **kwargs)
        return original(self, *args, **kwargs)

    return __call__


def install() -> None:
    """Applies the patches (idempotent)."""
    check_triton()
    with _lock:
        executor = interpreter.GridExecutor
        if getattr(executor._init_args_hst, _MARK, False):
            return
        for owner, name, wrap in ((executor, "_init_args_hst", _wrap_init_args_hst),
                                  (executor, "_restore_args_dev", _wrap_restore_args_dev),
                                  (executor, "__call__", _wrap_executor_call),
                                  (JITFunction, "run", _wrap_jit_run),
                                  (JITFunction, "__call__", _wrap_jit_call)):
            original = getattr(owner, name)
            patched = wrap(original)
            patched.__wrapped__ = original
            setattr(patched, _MARK, True)
            setattr(owner, name, patched)


def installed() -> bool:
    return getattr(interpreter.GridExecutor._init_args_hst, _MARK, False)
