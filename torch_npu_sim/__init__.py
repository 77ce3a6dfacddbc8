"""torch_npu_sim: a simulated NPU for PyTorch.

Importing this package (which ``import torch`` does by itself through the
``torch.backends`` entry point) gives PyTorch the device type ``npusim``:

    >>> import torch
    >>> x = torch.ones(2, 3, device="npusim")
    >>> torch.npusim.device_count()
    8
"""


def _autoload() -> None:
    """Entry point called by ``import torch`` (disable with TORCH_DEVICE_BACKEND_AUTOLOAD=0).

    When this package is imported before torch, its own ``import torch`` triggers this
    entry point while the package is still half-initialised; the package's own import
    then finishes the loading, so there is nothing to do here yet.
    """
    loader = globals().get("_load")
    if loader is not None:
        loader()


import atexit  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402

from . import _C

__all__ = ["device"]

_loaded = False


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    # Without devices (NPUSIM_DEVICE_COUNT=0, or an invalid NPUSIM_* variable) only the
    # device type is registered: the CPU allocator and every operator stay as they are, so
    # PyTorch works as without npusim; using npusim raises an error naming the variable.
    devices = _C._init()
    torch.utils.rename_privateuse1_backend("npusim")
    from . import device as _device_module

    torch._register_device_module("npusim", _device_module)
    torch.utils.generate_methods_for_privateuse1_backend(
        for_tensor=True, for_module=True, for_packed_sequence=True, for_storage=True
    )
    if not devices:
        from .device._device import _unavailable_reason

        _warn_unavailable(_unavailable_reason())
        return
    from . import _op_routing, compile as _compile, distributed as _distributed

    _C._graph_register()  # torch.accelerator.Graph on npusim (keyed by the renamed device type)
    _device_module.graphs._check_optimizer_captures()

    _op_routing.install()
    _distributed.register_backend()
    _compile.register()
    atexit.register(_let_autograd_device_threads_settle)
    if "NPUSIM_SANITIZER" in __import__("os").environ:  # the stream sanitizer (torch_npu_sim.sanitizer)
        from .sanitizer import _enable_from_environment

        _enable_from_environment()
    _transfer_cuda_from_environment(__import__("os").environ.get("NPUSIM_TRANSFER_CUDA", ""))


def _transfer_cuda_from_environment(value: str) -> None:
    # NPUSIM_TRANSFER_CUDA=1: the opt-in CUDA-to-npusim shim (torch_npu_sim.transfer_cuda)
    if value == "1":
        import torch_npu_sim.transfer_cuda  # noqa: F401 - installs on import
    elif value not in ("", "0"):
        message = f"NPUSIM_TRANSFER_CUDA={value!r} is not 0 or 1: the CUDA-to-npusim shim stays off"
        try:
            warnings.warn(message, UserWarning, stacklevel=2)
        except Warning:  # warnings are errors (-W error): `import torch` must not fail for it
            sys.stderr.write(f"UserWarning: {message}\n")


def _warn_unavailable(reason: str) -> None:
    message = (f"npusim is disabled: {reason}. PyTorch works as usual; using an npusim device raises an "
               "error until the variable is fixed or unset.")
    try:
        warnings.warn(message, UserWarning, stacklevel=2)
    except Warning:  # warnings are errors (-W error): `import torch` must not fail for it
        sys.stderr.write(f"UserWarning: {message}\n")


def _let_autograd_device_threads_settle() -> None:
    # Backward on npusim runs on autograd's per-device threads. In torch 2.13 each backward
    # carries a copy of the caller's contextvars in its thread-local state, and a device
    # thread may drop the last reference to it (which takes the GIL) just after backward
    # returned; if the interpreter is finalizing by then, that thread is unwound inside a
    # noexcept destructor and the process aborts at exit. A device thread handles its
    # tasks one at a time, so once it has run one more (empty-context) backward it has
    # dropped everything from the previous one.
    try:
        engine = torch.autograd.variable.Variable._execution_engine
        with torch.enable_grad():
            _run_empty_backwards(engine)
    except Exception:  # noqa: BLE001 - exit must not fail because of this
        pass


def _run_empty_backwards(engine) -> None:
    for index in range(torch.npusim.device_count()):
        leaf = torch.zeros((), device=torch.device("npusim", index), requires_grad=True)
        out = leaf * 1.0
        # the engine directly: no context is stashed for this one
        engine.run_backward((out,), (torch.ones((), device=out.device),), False, False, (), True, True)


_load()
