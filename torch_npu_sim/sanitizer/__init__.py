"""Sanitizers for npusim device code.

Stream sanitizer (as ``torch.cuda._sanitizer`` for CUDA): :func:`enable` (or
``NPUSIM_SANITIZER=1`` in the environment, read when torch_npu_sim loads) watches every
ATen op on npusim tensors and raises :class:`StreamSanitizerError` when a kernel on one
stream reads or writes a storage that a kernel on another stream wrote (or, for a write,
read), with no event, wait or synchronize ordering the two. The report names the tensor,
both streams, both ops and both stack traces.

Collectives count as kernels on the stream that issued them (their c10d ops carry their
tensors): the npusim backend completes a collective before ``work.wait()`` returns, and
DDP and FSDP2 order their streams around it with the calls watched here.

Protected memory (``NPUSIM_PROTECT_MEMORY=1``) lives in the runtime; see
:func:`protected_memory`.
"""
from __future__ import annotations

import os

from .. import _C
from . import hooks
from .races import RaceDetector, StreamRace, StreamSanitizerError

__all__ = ["enable", "disable", "is_enabled", "StreamSanitizerError", "StreamRace", "protected_memory",
           "device_access_openings"]

_detector: RaceDetector | None = None


def enable() -> None:
    """Turns the stream sanitizer on for this process (idempotent)."""
    global _detector
    if _detector is not None:
        return
    detector = RaceDetector()
    hooks.install(detector)
    detector.__enter__()
    _detector = detector


def disable() -> None:
    """Turns it off and forgets what it saw."""
    global _detector
    if _detector is None:
        return
    detector, _detector = _detector, None
    detector.__exit__(None, None, None)
    hooks.uninstall()


def is_enabled() -> bool:
    return _detector is not None


def protected_memory() -> bool:
    """True when the runtime runs with NPUSIM_PROTECT_MEMORY=1 (device memory unreadable
    from the host outside kernel launches and runtime copies)."""
    return bool(_C._protected_memory())


def device_access_openings() -> int:
    """How many times device memory was opened (a 0 -> 1 scope transition, a few
    mprotect calls each) in protected mode."""
    return int(_C._device_access_openings())


def _enable_from_environment() -> None:
    value = os.environ.get("NPUSIM_SANITIZER", "")
    if value in ("", "0"):
        return
    if value != "1":
        raise ValueError(f"NPUSIM_SANITIZER must be 0 or 1, got {value!r}")
    enable()
