"""torchvision's Python layers on a CPU torch, for SGLang's import path.

SGLang imports transformers' image-processor registry, which transformers 5 gives only to
environments with torchvision. The torchvision wheel on PyPI for torch 2.13 (0.28.0) is a CUDA
build: its compiled operators cannot load on the CPU torch, which torchvision tolerates except
for two fake-kernel registrations (`nms`, `qnms`) that it makes without checking, so
`import torchvision` fails with "operator torchvision::nms does not exist".

When torchvision's compiled library does not load, the two operators are declared here with
torchvision's own schemas and no kernel: torchvision then imports, and calling either operator
raises torch's clear "could not run 'torchvision::nms' ... backend" error. A torchvision whose
library loads is left alone.
"""
from __future__ import annotations

import importlib.util
import os
import sys

import torch

# the schemas torchvision 0.28's library defines for the operators it registers fakes for unchecked
UNCHECKED_OPS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library: torch.library.Library | None = None


def _compiled_library() -> str | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for name in os.listdir(location):
            if name.startswith("_C.") and name.endswith((".so", ".pyd")):
                return os.path.join(location, name)
    return None


def declare_missing_torchvision_ops() -> list[str]:
    """Declares the operators torchvision's import needs when its compiled library cannot
    load; returns the names declared (none when torchvision is absent, imported or loadable)."""
    global _library
    if "torchvision" in sys.modules or _library is not None:
        return []
    path = _compiled_library()
    if path is None:
        return []
    try:
        torch.ops.load_library(path)
        return []
    except (OSError, ImportError):
        pass
    _library = torch.library.Library("torchvision", "FRAGMENT")
    declared = []
    for name, schema in UNCHECKED_OPS.items():
        if not hasattr(torch.ops.torchvision, name):
            _library.define(schema)
            declared.append(f"torchvision::{name}")
    return declared
