"""FlexAttention on npusim, eager and compiled, forward and backward.

torch 2.13 needs three small patches (each over a private API listed in
``torch_npu_sim/_private_torch.py``; applied on checked torch versions only, otherwise
skipped with a warning, leaving FlexAttention refused on npusim as before):

* **Eager.** ``flex_attention``'s front end accepts only cuda, cpu, xpu, hpu and mps,
  although its unfused path (``sdpa_dense`` and its backward) is device-generic:
  ``_validate_device`` is wrapped to accept npusim tensors.
* **Compiled forward.** Inductor lowers ``flex_attention`` through its C++ template only
  when the device type is "cpu", and otherwise through Triton. npusim runs Inductor's
  C++ kernels on its memory, so the lowering is wrapped to call the C++ template
  (``lower_cpu``) for npusim too. Like the CPU's, that template serves inference: it
  returns no logsumexp.
* **Compiled backward.** Inductor has no C++ template for ``flex_attention_backward``
  (on the CPU, torch refuses FlexAttention training). When a compiled graph needs the
  logsumexp or gradients, npusim's autograd kernel of the HOP traces torch's own dense
  math (``sdpa_dense``) instead of the HOP, so AOTAutograd derives the backward and
  Inductor compiles both passes with its ordinary C++ codegen. Eager calls keep torch's
  autograd kernel.
"""
from __future__ import annotations

import importlib

import torch

from .. import _private_torch

DEVICE_TYPE = "npusim"
FRONT_END = "torch.nn.attention.flex_attention"
HOP_MODULE = "torch._higher_order_ops.flex_attention"
_MARK = "_npusim_flex_attention"

_EAGER_APIS = ("torch.nn.attention.flex_attention:_validate_device",)
_AUTOGRAD_APIS = (
    "torch._higher_order_ops.flex_attention:flex_attention",
    "torch._higher_order_ops.flex_attention:flex_attention_autograd",
    "torch._higher_order_ops.flex_attention:sdpa_dense",
    "torch._dynamo._trace_wrapped_higher_order_op:TransformGetItemToIndex",
    "torch._subclasses.fake_tensor:is_fake",
)
_LOWERING_APIS = (
    "torch._inductor.lowering:lowerings",
    "torch._inductor.kernel.flex.flex_cpu:lower_cpu",
)

# How often compiled tracing took the dense math instead of the HOP (tests read it).
dense_traces = 0


def install_front_end(_module=None) -> bool:
    """Lets ``flex_attention`` accept npusim tensors (eager and under Dynamo)."""
    if not _private_torch.patch_allowed(_EAGER_APIS, "flex_attention stays refused on npusim"):
        return False
    front_end = importlib.import_module(FRONT_END)
    original = front_end._validate_device
    if getattr(original, _MARK, False):
        return True

    def _validate_device(query, key, value):
        # q, k and v were checked to share a device before this is called
        if query.device.type == DEVICE_TYPE:
            return None
        return original(query, key, value)

    setattr(_validate_device, _MARK, True)
    front_end._validate_device = _validate_device
    return True


def install_autograd(_module=None) -> bool:
    """Adds npusim's autograd kernel to the flex_attention HOP (see the module doc)."""
    if not _private_torch.patch_allowed(_AUTOGRAD_APIS, "compiled FlexAttention training fails on npusim"):
        return False
    hop_module = importlib.import_module(HOP_MODULE)  # the module, not the HOP it exports
    from torch._C import DispatchKey

    hop = hop_module.flex_attention
    if DispatchKey.AutogradPrivateUse1 in hop.py_kernels:
        return True
    torch_autograd, dense = hop_module.flex_attention_autograd, hop_module.sdpa_dense

    @hop.py_impl(DispatchKey.AutogradPrivateUse1)
    def flex_attention_npusim_autograd(query, key, value, score_mod, block_mask, scale, kernel_options,
                                       score_mod_other_buffers=(), mask_mod_other_buffers=()):
        args = (query, key, value, score_mod, block_mask, scale, kernel_options,
                score_mod_other_buffers, mask_mod_other_buffers)
        # imported here: this runs while Dynamo may still be importing the HOP module
        from torch._dynamo._trace_wrapped_higher_order_op import TransformGetItemToIndex
        from torch._subclasses.fake_tensor import is_fake

        if is_fake(query) and _needs_dense(query, key, value, kernel_options, score_mod_other_buffers):
            global dense_traces
            dense_traces += 1
            with TransformGetItemToIndex():  # score_mod indexes buffers with tensors, as in torch's kernel
                return dense(*args)
        return torch_autograd(*args)

    return True


def _needs_dense(query, key, value, kernel_options, score_mod_other_buffers) -> bool:
    # The C++ template returns the output only: no logsumexp, no max scores, no backward.
    if kernel_options.get("OUTPUT_LOGSUMEXP") or kernel_options.get("OUTPUT_MAX"):
        return True
    return torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (query, key, value, *score_mod_other_buffers))


def install_lowering() -> bool:
    """Routes Inductor's flex_attention lowering to the C++ template for npusim."""
    if not _private_torch.patch_allowed(_LOWERING_APIS, "compiled FlexAttention fails on npusim"):
        return False
    from torch._inductor.kernel.flex.flex_cpu import lower_cpu
    from torch._inductor.lowering import lowerings

    op = torch.ops.higher_order.flex_attention
    original = lowerings.get(op)
    if original is None:
        raise _private_torch.PrivateTorchApiError("torch._inductor.lowering:lowerings has no flex_attention lowering")
    if getattr(original, _MARK, False):
        return True

    def flex_attention_lowering(query, *args, **kwargs):
        if query.get_device().type == DEVICE_TYPE:
            return lower_cpu(query, *args, **kwargs)
        return original(query, *args, **kwargs)

    setattr(flex_attention_lowering, _MARK, True)
    lowerings[op] = flex_attention_lowering
    return True
