"""The attributes the shim replaces, and how to put each original back."""
from __future__ import annotations

from dataclasses import dataclass

_ABSENT = object()


@dataclass
class Patch:
    owner: object  # a module or class
    name: str
    original: object  # the owner's own attribute, or _ABSENT when it was inherited or missing
    replacement: object
    kind: str  # what the patch does, for the coverage report
    label: str  # "torch.Tensor.to", as the report names it


class PatchSet:
    """Replaces attributes and remembers what was there; undo() restores every one of them."""

    def __init__(self) -> None:
        self.patches: list[Patch] = []

    def replace(self, owner, name: str, replacement, kind: str, where: str | None = None) -> None:
        """owner.name = replacement; `where` names the owner in the report (default: its name)."""
        own = vars(owner).get(name, _ABSENT) if isinstance(owner, type) else getattr(owner, name, _ABSENT)
        setattr(owner, name, replacement)
        self.patches.append(Patch(owner, name, own, replacement, kind, f"{where or _label(owner)}.{name}"))

    def undo(self) -> None:
        # newest first, so an attribute patched twice gets its first original back
        while self.patches:
            patch = self.patches.pop()
            if patch.original is _ABSENT:
                delattr(patch.owner, patch.name)
            else:
                setattr(patch.owner, patch.name, patch.original)

    def kinds(self) -> dict[str, list[str]]:
        by_kind: dict[str, list[str]] = {}
        for patch in self.patches:
            by_kind.setdefault(patch.kind, []).append(patch.label)
        return by_kind


def _label(owner) -> str:
    if isinstance(owner, type):
        return f"{owner.__module__}.{owner.__qualname__}"
    return owner.__name__
