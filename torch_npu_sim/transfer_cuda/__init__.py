"""Run CUDA-written PyTorch programs on npusim unchanged (opt-in).

``import torch_npu_sim.transfer_cuda`` (or ``NPUSIM_TRANSFER_CUDA=1`` in the environment)
installs the shim: CUDA devices (``"cuda"``, ``"cuda:1"``, ``torch.device("cuda")``) become
npusim devices wherever torch takes a device, ``torch.cuda`` is served by ``torch.npusim``,
``.cuda()`` moves to npusim, ``autocast("cuda")``/``GradScaler("cuda")`` act on npusim, and
the c10d backend ``"nccl"`` is npusim's. Nothing else changes: dtypes, values, CPU and other
devices, TorchScript and Triton are left alone; CUDA features with no npusim counterpart raise
:class:`UnsupportedCudaFeature` naming them. ``uninstall()`` restores every replaced attribute.
``python -m torch_npu_sim.transfer_cuda --report`` prints what is mapped.
"""
from __future__ import annotations

import threading

import torch

from . import _cuda_module, _torch_functions
from ._devices import UnsupportedCudaFeature, map_device
from ._patches import PatchSet

__all__ = ["install", "uninstall", "is_installed", "installed_patches", "UnsupportedCudaFeature", "map_device"]

ENVIRONMENT_VARIABLE = "NPUSIM_TRANSFER_CUDA"
NCCL_SERVED = "NCCL is served by the npusim backend"

_lock = threading.Lock()
_patches = PatchSet()


def install() -> None:
    """Installs the shim (a second call does nothing)."""
    with _lock:
        if _patches.patches:
            return
        if not torch.npusim.is_available():
            raise RuntimeError("torch_npu_sim.transfer_cuda needs npusim devices, and npusim is unavailable "
                               "(see NPUSIM_DEVICE_COUNT)")
        try:
            _install()
        except BaseException:
            _patches.undo()
            raise


def _install() -> None:
    import torch.distributed as dist

    for owner, name, replacement, kind, where in _torch_functions.plan():
        _patches.replace(owner, name, replacement, kind, where)
    for entry in _cuda_module.classify():
        if entry.replacement is not None:
            _patches.replace(torch.cuda, entry.name, entry.replacement, entry.kind, "torch.cuda")
    if dist.is_available():
        _patches.replace(dist, "is_nccl_available", lambda: True, NCCL_SERVED, "torch.distributed")


def uninstall() -> None:
    """Puts back every attribute the shim replaced."""
    with _lock:
        _patches.undo()


def is_installed() -> bool:
    return bool(_patches.patches)


def installed_patches() -> dict[str, list[str]]:
    """{what a patch does: the attributes it was applied to} while the shim is installed."""
    return _patches.kinds()


install()
