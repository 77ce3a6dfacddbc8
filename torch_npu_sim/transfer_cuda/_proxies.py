"""Stand-ins for classes the shim cannot patch in place (torch's C types, torch.cuda's classes).

A stand-in is a class whose calls build an instance of the real class from mapped arguments,
and for which ``isinstance``/``issubclass`` answer as for the real class; other attributes
(static methods, constants) are read from the real class.
"""
from __future__ import annotations

from ._devices import UnsupportedCudaFeature, map_args, map_kwargs


class _StandInMeta(type):
    def __instancecheck__(cls, instance) -> bool:
        return isinstance(instance, cls._real)

    def __subclasscheck__(cls, subclass) -> bool:
        return isinstance(subclass, type) and issubclass(subclass, cls._real)

    def __getattr__(cls, name):
        return getattr(cls._real, name)

    def __repr__(cls) -> str:
        return f"<class {cls.__qualname__!r} (npusim stand-in for {cls._real.__module__}.{cls._real.__qualname__})>"


def stand_in(real: type, public_name: str, map_call=None) -> type:
    """A class named `public_name` whose instances are `real(*mapped args)`."""
    def __new__(cls, *args, **kwargs):
        if map_call is not None:
            args, kwargs = map_call(args, kwargs)
        else:
            args, kwargs = map_args(args), map_kwargs(kwargs)
        return real(*args, **kwargs)

    module, _, name = public_name.rpartition(".")
    return _StandInMeta(name, (), {"__new__": __new__, "_real": real, "__module__": module,
                                    "__doc__": real.__doc__})


class _UnsupportedMeta(type):
    def __instancecheck__(cls, instance) -> bool:
        return False

    def __subclasscheck__(cls, subclass) -> bool:
        return subclass is cls


def unsupported_class(public_name: str, reason: str) -> type:
    """A class named `public_name` that raises UnsupportedCudaFeature (naming it) when built."""
    message = unsupported_message(public_name, reason)

    def __new__(cls, *args, **kwargs):
        raise UnsupportedCudaFeature(message)

    module, _, name = public_name.rpartition(".")
    return _UnsupportedMeta(name, (), {"__new__": __new__, "__module__": module, "__doc__": message})


def unsupported_function(public_name: str, reason: str):
    message = unsupported_message(public_name, reason)

    def unsupported(*args, **kwargs):
        raise UnsupportedCudaFeature(message)

    unsupported.__name__ = unsupported.__qualname__ = public_name.rpartition(".")[2]
    unsupported.__doc__ = message
    return unsupported


def unsupported_message(public_name: str, reason: str) -> str:
    return f"{public_name} is a CUDA feature npusim does not provide ({reason}); torch_npu_sim.transfer_cuda " \
           f"maps CUDA programs to npusim but cannot run this call"
