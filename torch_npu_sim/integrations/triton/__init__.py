"""Triton kernels on npusim, through Triton's CPU interpreter, on npusim memory in place.

    import torch, triton, triton.language as tl
    import torch_npu_sim.integrations.triton as npusim_triton

    npusim_triton.enable()                  # once; before or after kernels are decorated

    @triton.jit
    def add(x, y, out, n, BLOCK: tl.constexpr): ...

    x = torch.randn(4096, device="npusim"); ...
    add[(triton.cdiv(4096, 1024),)](x, y, out, 4096, BLOCK=1024)   # out is written in npusim memory

What ``enable()`` does (needs the ``triton`` extra, triton==3.9.0):

* launches with npusim tensor arguments run in Triton's interpreter with no copy: the
  interpreter reads and writes through raw addresses, and npusim memory is host memory;
  stock Triton would copy every argument's storage to the host and back (``_interpreter``);
* a kernel decorated with plain ``@triton.jit`` (no ``TRITON_INTERPRET=1``) is
  interpreted when launched on npusim tensors; ``TRITON_INTERPRET=1`` kernels work too;
* ``@triton.jit`` helpers an interpreted kernel calls are interpreted, and ``libdevice``
  calls (``exp``, ``tanh``, ...) map to ``tl.math`` or NumPy while it runs (``_libdevice``),
  which Inductor's Triton kernels need (``torch.compile(..., options={"npusim_codegen": "triton"})``);
* with no GPU, ``triton.autotune`` times its configs on the host clock (``_host_driver``).

Launches without npusim tensors (CPU-only, or a real GPU's tensors) are left to Triton.
"""
from __future__ import annotations


def enable() -> None:
    """Lets ``kernel[grid](...)`` run on npusim tensors (idempotent). Raises RuntimeError when
    triton is not installed or is not the checked version."""
    try:
        import triton  # noqa: F401
    except ImportError as error:
        raise RuntimeError("triton is not installed: pip install 'torch_npu_sim[triton]' "
                           "(or bash scripts/install_triton.sh)") from error
    from . import _host_driver, _interpreter

    _interpreter.install()
    _host_driver.install_if_no_gpu()


def is_enabled() -> bool:
    import sys

    module = sys.modules.get(__name__ + "._interpreter")
    return module is not None and module.installed()


def counters() -> dict[str, int]:
    """{"zero_copy_launches": interpreted launches that ran on npusim memory in place,
    "rerouted_launches": launches of compiled ``@triton.jit`` kernels sent to the interpreter}."""
    from . import _interpreter

    return dict(_interpreter.counters)
