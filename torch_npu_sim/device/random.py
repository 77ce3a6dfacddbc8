"""Random numbers: one generator per device; state is 16 bytes (seed | offset)."""
from __future__ import annotations

from typing import Iterable

import torch

from .. import _C
from ._device import _device_index, _device_t, _lazy_init, device_count, is_available


class _DefaultGenerators:
    """``torch.npusim.default_generators``: created on first use."""

    _gens: tuple = ()

    def _all(self) -> tuple:
        if not self._gens:
            _lazy_init()
            type(self)._gens = tuple(_C._get_default_generator(i) for i in range(device_count()))
        return self._gens

    def __getitem__(self, i):
        return self._all()[i]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self):
        return iter(self._all())


default_generators = _DefaultGenerators()


def _generator(device: _device_t = None) -> torch.Generator:
    _lazy_init()  # an unusable npusim says why
    index = _device_index(device)
    if not 0 <= index < device_count():
        raise IndexError(f"Invalid npusim device index {index}: there are {device_count()} npusim device(s)")
    return default_generators[index]


# Seeding is silently ignored when npusim is unavailable, as torch.cuda's is without CUDA:
# torch.manual_seed and torch.seed call manual_seed_all in every program, npusim or not.


def manual_seed(seed: int) -> None:
    seed = int(seed)
    if is_available():
        _generator().manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    seed = int(seed)
    if is_available():
        for gen in default_generators:
            gen.manual_seed(seed)


def seed() -> None:
    if is_available():
        _generator().seed()


def seed_all() -> None:
    if is_available():
        new_seed = _generator().seed()
        for gen in default_generators:
            gen.manual_seed(new_seed)


def initial_seed() -> int:
    return _generator().initial_seed()


def get_rng_state(device: _device_t = "npusim") -> torch.Tensor:
    return _generator(device).get_state()


def set_rng_state(new_state: torch.Tensor, device: _device_t = "npusim") -> None:
    _generator(device).set_state(new_state)


def get_rng_state_all() -> list[torch.Tensor]:
    return [gen.get_state() for gen in default_generators]


def set_rng_state_all(new_states: Iterable[torch.Tensor]) -> None:
    for index, state in enumerate(new_states):
        set_rng_state(state, index)
