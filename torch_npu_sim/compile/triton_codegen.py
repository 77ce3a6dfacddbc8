"""Inductor's Triton codegen for npusim: ``options={"npusim_codegen": "triton"}``.

The default (``"cpp"``) is untouched. In Triton mode the kernels Inductor generates for
npusim buffers are Triton kernels, run by Triton's interpreter on npusim memory in place
(``torch_npu_sim.integrations.triton``). Torch 2.13 supports interpreted Inductor kernels
only process-wide, so every switch below is applied for the duration of one Triton-mode
compilation (forward, and the backward AOTAutograd compiles lazily) and undone afterwards,
under a lock, so C++ compilations before and after, in the same process, stay C++:

* npusim's Inductor scheduling is Inductor's ``TritonScheduling`` (the wrapper codegen,
  which allocates npusim buffers, is the same), and ``is_triton_capable`` is true;
* ``TRITON_INTERPRET=1``: the generated module's ``@triton.jit`` then makes interpreted
  kernels, and Inductor's launcher (``CachingAutotuner``) records it, so the compiled
  module interprets its kernels whenever it runs, with no further switch;
* ``torch.utils._triton.triton_hash_with_backend`` (a cache key that asks the active Triton
  driver for a GPU compile target) hashes the Triton version and "interpreter" instead;
* ``triton_helpers.set_driver_to_gpu()``, which the generated module calls at import and
  which demands a GPU driver, does nothing;
* every compile cache is off (``torch.compiler.config.force_disable_caches``), so a C++
  artifact is never served to a Triton-mode compilation, nor the reverse.

``libdevice`` calls in generated kernels (``exp``, ``tanh``, ...), which the interpreter
leaves unimplemented, are mapped while a kernel is interpreted (``integrations.triton``).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import threading

from .. import _private_torch

OPTION = "npusim_codegen"
CODEGENS = ("cpp", "triton")
DEVICE_TYPE = "npusim"

_TORCH_APIS = (
    "torch._inductor.codegen.triton:TritonScheduling",
    "torch.utils._triton:triton_hash_with_backend",
    "torch._inductor.runtime.triton_helpers:set_driver_to_gpu",
    "torch._inductor.runtime.triton_compat:triton_key",
    "torch._inductor.compile_fx:compile_fx_inner",
)

_lock = threading.RLock()
_state = threading.local()
# Triton-mode compilations (forward and backward graphs) run so far
counters = {"triton_compiles": 0}


def active() -> bool:
    """Whether a Triton-mode compilation is running on this thread."""
    return getattr(_state, "depth", 0) > 0


def parse(options: dict | None) -> tuple[str, dict]:
    """(codegen, the remaining Inductor options); ValueError for an unknown codegen."""
    options = dict(options or {})
    codegen = options.pop(OPTION, "cpp")
    if codegen not in CODEGENS:
        raise ValueError(f"npusim backend: {OPTION}={codegen!r}; expected one of {CODEGENS}")
    return codegen, options


def _interpreter_hash() -> str:
    from torch._inductor.runtime.triton_compat import triton_key

    return hashlib.sha256(f"{triton_key()}-npusim-interpreter".encode()).hexdigest().upper()


def _set_driver_to_gpu_noop() -> None:
    return None


@contextlib.contextmanager
def _swapped(owner, name: str, value):
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def triton_mode():
    """The switches of a Triton-mode compilation (re-entrant; see the module docstring)."""
    with _lock:
        if active():
            _state.depth += 1
            try:
                yield
            finally:
                _state.depth -= 1
            return
        _private_torch.require_checked_version(
            _TORCH_APIS, f"{OPTION}='triton' is refused; the default C++ codegen works")
        import torch
        import torch._inductor.runtime.triton_helpers as triton_helpers
        import torch.utils._triton as torch_triton
        from torch._inductor.codegen.common import (
            get_scheduling_for_device,
            get_wrapper_codegen_for_device,
            register_backend_for_device,
        )
        from torch._inductor.codegen.triton import TritonScheduling

        import torch_npu_sim.integrations.triton as npusim_triton
        from . import inductor
        from .device_interface import NpuSimInterface

        npusim_triton.enable()
        inductor.register()
        scheduling = get_scheduling_for_device(DEVICE_TYPE)
        wrapper = get_wrapper_codegen_for_device(DEVICE_TYPE)
        previous_env = os.environ.get("TRITON_INTERPRET")
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.compiler.config.patch(force_disable_caches=True))
            stack.enter_context(_swapped(torch_triton, "triton_hash_with_backend", _interpreter_hash))
            stack.enter_context(_swapped(triton_helpers, "set_driver_to_gpu", _set_driver_to_gpu_noop))
            stack.enter_context(_swapped(NpuSimInterface, "is_triton_capable", staticmethod(lambda device=None: True)))
            stack.callback(register_backend_for_device, DEVICE_TYPE, scheduling, wrapper)
            register_backend_for_device(DEVICE_TYPE, TritonScheduling, wrapper)
            os.environ["TRITON_INTERPRET"] = "1"
            _state.depth = 1
            try:
                yield
            finally:
                _state.depth = 0
                if previous_env is None:
                    os.environ.pop("TRITON_INTERPRET", None)
                else:
                    os.environ["TRITON_INTERPRET"] = previous_env


def inner_compile():
    """Inductor's ``compile_fx_inner`` under :func:`triton_mode` (AOTAutograd compiles the
    backward graph lazily, at the first backward, outside the outer compilation)."""
    from torch._inductor.compile_fx import compile_fx_inner

    def compile_inner(*args, **kwargs):
        with triton_mode():
            counters["triton_compiles"] += 1
            return compile_fx_inner(*args, **kwargs)

    return compile_inner
