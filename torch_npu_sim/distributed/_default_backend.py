"""``init_process_group()`` without a backend on an npusim machine, then DDP.

torch 2.13 maps an unnamed backend to the accelerator's backend ("npusim" here) but marks
the group's *default* backend as gloo unless nccl is among its backends; no gloo backend
exists in that group, so everything that asks for the default backend (DDP's logger,
``ProcessGroup.name()``) fails with "Could not find backend type 1 ... gloo", and CPU tensors
find no backend. The fix marks the npusim backend (c10d type CUSTOM) as the default and as
the CPU tensors' backend (it serves both, as ``init_process_group("npusim")`` gives), right
after torch created the group. It wraps a private torch function, so it is applied only on the torch versions it
was written against (tests/distributed/test_default_backend.py fails loudly otherwise).
"""
import functools
import inspect

import torch

from .. import _private_torch

_ATTRIBUTE = "_new_process_group_helper"
_APIS = ("torch.distributed.distributed_c10d:_new_process_group_helper",
         "torch.distributed.distributed_c10d:ProcessGroup")
PATCHED_TORCH_VERSIONS = set(_private_torch.api(_APIS[0]).versions)
_torch_version = _private_torch.torch_version


def install() -> bool:
    """Wraps c10d's group factory once; returns whether the fix is active."""
    import torch.distributed.distributed_c10d as c10d

    original = getattr(c10d, _ATTRIBUTE, None)
    if original is None or getattr(original, "_npusim_default_backend", False):
        return original is not None
    if not _private_torch.patch_allowed(_APIS, "init_process_group() without a backend is not fixed up; "
                                        "pass backend='npusim' for DDP"):
        return False
    signature = inspect.signature(original)

    @functools.wraps(original)
    def new_process_group_helper(*args, **kwargs):
        pg, store = original(*args, **kwargs)
        backend = signature.bind(*args, **kwargs).arguments["backend"]
        if (str(backend) == c10d.Backend.UNDEFINED and isinstance(pg, c10d.ProcessGroup)
                and torch._C._get_accelerator().type == "npusim"):
            pg._set_default_backend(c10d.ProcessGroup.BackendType.CUSTOM)
            # the npusim backend serves CPU tensors too (as the "npusim" backend name does)
            backend_impl = pg._get_backend(torch.device("npusim"))
            pg._register_backend(torch.device("cpu"), c10d.ProcessGroup.BackendType.CUSTOM, backend_impl)
        return pg, store

    new_process_group_helper._npusim_default_backend = True
    setattr(c10d, _ATTRIBUTE, new_process_group_helper)
    return True
