"""Collectives for npusim: the c10d backend "npusim"."""


def register_backend() -> None:
    """Register the "npusim" c10d backend (called when torch_npu_sim is imported)."""
