"""The SGLang versions this integration was checked on, and the guard that refuses others."""
from __future__ import annotations

CHECKED_SGLANG_VERSIONS: tuple[str, ...] = ("0.5.21",)


class SglangVersionError(RuntimeError):
    """The installed SGLang is not one the npusim integration was checked on."""


def sglang_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("sglang")


def check_sglang() -> None:
    version = sglang_version()
    if version not in CHECKED_SGLANG_VERSIONS:
        raise SglangVersionError(
            f"npusim's SGLang integration was checked on SGLang {', '.join(CHECKED_SGLANG_VERSIONS)} only, "
            f"not {version}: install it with bash scripts/install_sglang.sh")
