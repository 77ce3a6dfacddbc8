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

import torch  # noqa: E402

from . import _C

__all__ = ["device"]

_loaded = False


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    _C._init()
    torch.utils.rename_privateuse1_backend("npusim")
    from . import device as _device_module

    torch._register_device_module("npusim", _device_module)
    torch.utils.generate_methods_for_privateuse1_backend(
        for_tensor=True, for_module=True, for_packed_sequence=True, for_storage=True
    )
    from . import compile as _compile, distributed as _distributed

    _distributed.register_backend()
    _compile.register()
    atexit.register(_let_autograd_device_threads_settle)


def _let_autograd_device_threads_settle() -> None:
    # Backward on npusim runs on autograd's device threads. In torch 2.13 each backward
    # carries a copy of the caller's contextvars in its thread-local state, which the
    # device thread releases (taking the GIL) just after the backward has returned. If the
    # interpreter finalizes in that window, the thread is unwound inside a noexcept
    # destructor and the process aborts at exit. Releasing the GIL briefly lets it finish.
    import time

    for _ in range(5):
        time.sleep(0.01)


_load()
