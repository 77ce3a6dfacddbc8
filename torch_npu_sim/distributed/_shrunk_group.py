"""``dist.shrink_group`` on npusim groups: the new group serves npusim and CPU tensors.

torch 2.13 builds the shrunk group with the new backend registered for one device only
(the parent's bound device, else the CPU) under the gloo/nccl backend type. An npusim group
serves both npusim and CPU tensors as the c10d type CUSTOM, so the shrunk group would lose
one of the two (an npusim tensor on a group shrunk from an unbound parent finds no backend).
The fix registers the npusim backend for both devices and as the default, right after torch
built the group. It wraps a private torch function, so it is applied only on the torch
versions it was written against (tests/distributed/test_shrink.py fails loudly otherwise).
"""
import functools

import torch

from .. import _private_torch

_ATTRIBUTE = "_create_shrunk_process_group"
_APIS = ("torch.distributed.distributed_c10d:_create_shrunk_process_group",
         "torch.distributed.distributed_c10d:ProcessGroup.BackendType.CUSTOM")


def install() -> bool:
    """Wraps c10d's shrunk-group factory once; returns whether the fix is active."""
    import torch.distributed.distributed_c10d as c10d

    original = getattr(c10d, _ATTRIBUTE, None)
    if original is None or getattr(original, "_npusim_shrunk_group", False):
        return original is not None
    if not _private_torch.patch_allowed(_APIS, "dist.shrink_group() of an npusim group serves one device only"):
        return False
    from .. import _C

    @functools.wraps(original)
    def create_shrunk_process_group(new_backend, *args, **kwargs):
        pg = original(new_backend, *args, **kwargs)
        if isinstance(new_backend, _C.ProcessGroupNpuSim):
            custom = c10d.ProcessGroup.BackendType.CUSTOM
            for device in ("cpu", "npusim"):
                pg._register_backend(torch.device(device), custom, new_backend)
            pg._set_default_backend(custom)
        return pg

    create_shrunk_process_group._npusim_shrunk_group = True
    setattr(c10d, _ATTRIBUTE, create_shrunk_process_group)
    return True
