"""torch.compile on npusim: the named backend and plain Inductor, against eager."""
import copy
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch._dynamo.testing import CompileCounterWithBackend
from torch._inductor.utils import fresh_cache, run_and_get_code
from torch.utils._python_dispatch import TorchDispatchMode

from models import MLP, TransformerBlock, memory_bound_chain

BACKENDS = ["npusim", "inductor"]  # the named backend, and plain torch.compile(model)


def on_npusim(module, device="npusim"):
    """(eager copy on npusim, compiled-to-be copy on npusim) of the same weights."""
    return copy.deepcopy(module).to(device), copy.deepcopy(module).to(device)


def assert_grads_close(model_a, model_b, **tol):
    for (name, a), (_, b) in zip(model_a.named_parameters(), model_b.named_parameters()):
        torch.testing.assert_close(a.grad.cpu(), b.grad.cpu(), msg=f"gradient of {name}", **tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mlp_training_step_matches_eager(backend):
    torch.manual_seed(0)
    eager, compiled = on_npusim(MLP())
    step = torch.compile(compiled, backend=backend)
    x = torch.randn(8, 16, device="npusim")
    out_c, out_e = step(x), eager(x)
    assert out_c.device == torch.device("npusim", 0)
    torch.testing.assert_close(out_c.cpu(), out_e.cpu())
    out_c.square().mean().backward()
    out_e.square().mean().backward()
    assert_grads_close(compiled, eager)


def test_transformer_block_forward_and_gradients_match_eager():
    torch.manual_seed(0)
    eager, compiled = on_npusim(TransformerBlock())
    x = torch.randn(2, 8, 32, device="npusim", requires_grad=True)
    x_eager = x.detach().clone().requires_grad_()
    out_c = torch.compile(compiled, backend="npusim")(x)
    out_e = eager(x_eager)
    torch.testing.assert_close(out_c.cpu(), out_e.cpu())
    out_c.sum().backward()
    out_e.sum().backward()
    assert_grads_close(compiled, eager, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(x.grad.cpu(), x_eager.grad.cpu(), atol=1e-5, rtol=1e-4)


# Metadata-only ops: no kernel in eager, no kernel when compiled.
_VIEW_OPS = {"view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze",
             "select", "slice", "detach", "alias", "split", "unbind", "as_strided", "_reshape_alias", "unflatten"}


class CountComputeOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ not in _VIEW_OPS:
            self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def kernel_launches(wrapper_code: str) -> list[str]:
    """Kernel calls in the generated wrapper's call(): fused C++ kernels and extern/aten kernels."""
    call_body = wrapper_code[wrapper_code.index("def call("):]
    # C++ kernels are called through npusim_kernel_call (a device-access scope)
    return re.findall(r"^\s+(?:\w+ = )?(?:npusim_kernel_call\()?(cpp_fused_\w+|extern_kernels\.\w+|aten\.\w+|torch\.ops\.\w+\.\w+)[(,]",
                      call_body, re.M)


def test_transformer_block_is_fused_into_fewer_kernels_than_eager_ops():
    torch.manual_seed(0)
    model = TransformerBlock().to("npusim").eval()
    x = torch.randn(2, 8, 32, device="npusim")
    with torch.no_grad():
        with CountComputeOps() as eager_ops:
            expected = model(x)
        with fresh_cache():  # generate the code even when the kernels are cached
            out, (code,) = run_and_get_code(torch.compile(model, backend="npusim"), x)
    torch.testing.assert_close(out.cpu(), expected.cpu())
    launches = kernel_launches(code)
    fused = [k for k in launches if k.startswith("cpp_fused_")]
    assert fused and launches, code
    # layer norms, softmax with its mask, bias+gelu and residual adds collapse into a few loops
    assert len(launches) < len(eager_ops.ops), (launches, eager_ops.ops)
    assert any("softmax" in k for k in fused) and any("gelu" in k for k in fused), fused
    assert "empty_strided_npusim(" in code and "empty_strided_cpu(" not in code


def test_memory_bound_chain_is_one_kernel_per_reduction_pass():
    torch.manual_seed(0)
    x, residual = torch.randn(2, 4, 64, 64, device="npusim").unbind(0)
    bias, weight, norm_bias = torch.randn(3, 64, device="npusim").unbind(0)
    args = (x, bias, residual, weight, norm_bias)
    with fresh_cache():
        out, (code,) = run_and_get_code(torch.compile(memory_bound_chain, backend="npusim"), *args)
    torch.testing.assert_close(out.cpu(), memory_bound_chain(*[a.cpu() for a in args]))
    launches = kernel_launches(code)
    assert len(launches) == 1 and launches[0].startswith("cpp_fused_"), launches


def test_batchnorm_buffers_are_updated_like_eager():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))
    eager, compiled = on_npusim(net)
    step = torch.compile(compiled)
    for _ in range(2):
        x = torch.randn(8, 16, device="npusim")
        step(x).sum().backward()
        eager(x).sum().backward()
    for name, buf in eager.named_buffers():
        torch.testing.assert_close(dict(compiled.named_buffers())[name].cpu(), buf.cpu(), msg=name)
    assert compiled[1].num_batches_tracked.item() == 2
    assert_grads_close(compiled, eager)


def test_input_mutation_is_written_back_to_npusim_memory():
    def scale_in_place(x, y):
        x.mul_(2)
        y[0] = 7.0
        return x + y

    x, y = torch.ones(4, device="npusim"), torch.zeros(4, device="npusim")
    x_ptr = x.data_ptr()
    out = torch.compile(scale_in_place, backend="npusim")(x, y)
    assert x.data_ptr() == x_ptr
    assert x.cpu().tolist() == [2.0] * 4 and y.cpu().tolist() == [7.0, 0, 0, 0]
    assert out.cpu().tolist() == [9.0, 2.0, 2.0, 2.0]


def test_dynamic_shapes_compile_once():
    counter = CompileCounterWithBackend("npusim")
    fn = torch.compile(lambda x: F.gelu(x) * x.shape[0] + x.sum(-1, keepdim=True), backend=counter, dynamic=True)
    for rows in (3, 5, 9):
        x = torch.randn(rows, 6, device="npusim")
        torch.testing.assert_close(fn(x).cpu(), F.gelu(x.cpu()) * rows + x.cpu().sum(-1, keepdim=True))
    assert counter.frame_count == 1


def test_second_call_with_same_shapes_does_not_recompile():
    counter = CompileCounterWithBackend("inductor")
    model = torch.compile(MLP().to("npusim"), backend=counter)
    x = torch.randn(4, 16, device="npusim")
    first = model(x)
    second = model(x.clone())
    assert counter.frame_count == 1
    torch.testing.assert_close(first.cpu(), second.cpu())


def test_graph_break_and_cpu_inside_graph():
    def fn(x):
        y = x.sin() * 2
        torch._dynamo.graph_break()
        z = y.cpu() + 1  # device copy inside the second graph
        return z, y.cos().softmax(-1)

    counter = CompileCounterWithBackend("npusim")
    x = torch.randn(3, 5, device="npusim")
    z, w = torch.compile(fn, backend=counter)(x)
    assert counter.frame_count == 2
    assert z.device.type == "cpu" and w.device == torch.device("npusim", 0)
    torch.testing.assert_close(z, x.cpu().sin() * 2 + 1)
    torch.testing.assert_close(w.cpu(), (x.cpu().sin() * 2).cos().softmax(-1))


def test_factory_ops_and_softmax_inside_graph():
    def fn(x):
        positions = torch.arange(x.shape[-1], device=x.device, dtype=torch.float32)
        return (x + positions).softmax(-1) + torch.ones_like(x) + torch.full((x.shape[-1],), 0.5, device=x.device)

    x = torch.randn(4, 8, device="npusim")
    out = torch.compile(fn)(x)
    assert out.device == x.device
    torch.testing.assert_close(out.cpu(), fn(x.cpu()))


def test_second_device_stays_on_its_device():
    torch.npusim.synchronize()
    base0, base1 = torch.npusim.memory_allocated(0), torch.npusim.memory_allocated(1)
    x = torch.randn(64, 64, device="npusim:1")
    out = torch.compile(lambda t: (t @ t).softmax(-1) + torch.arange(64, device=t.device), backend="npusim")(x)
    assert out.device == torch.device("npusim", 1)
    assert torch.npusim.current_device() == 0
    torch.testing.assert_close(out.cpu(), (x.cpu() @ x.cpu()).softmax(-1) + torch.arange(64))
    assert torch.npusim.memory_allocated(0) == base0
    assert torch.npusim.memory_allocated(1) >= base1 + 2 * x.nbytes


def test_buffers_of_compiled_code_are_npusim_memory():
    fn = torch.compile(lambda x: (x.exp() + 1).log().sum(-1) + x.amax(-1), backend="npusim")
    x = torch.randn(512, 1024, device="npusim")  # 2 MiB
    fn(x)  # compile and warm the allocator's cache
    torch.npusim.synchronize()
    torch.npusim.reset_peak_memory_stats()
    base = torch.npusim.memory_allocated()
    out = fn(x)
    assert out.device.type == "npusim"
    assert torch.npusim.memory_allocated() == base + 512 * 4  # the 2 KiB result, a multiple of 512
    del out
    assert torch.npusim.memory_allocated() == base


def test_named_backend_rejects_unknown_options():
    fn = torch.compile(lambda x: x + 1, backend="npusim", options={"not_an_inductor_option": True})
    with pytest.raises(Exception, match="not_an_inductor_option"):
        fn(torch.ones(2, device="npusim"))


def test_scheduler_patch_marks_npusim_nodes_as_cpp_backend_nodes():
    from torch._inductor.scheduler import BaseSchedulerNode

    import torch_npu_sim.compile

    torch_npu_sim.compile.register_now()

    class Node:
        def __init__(self, device):
            self.device = device

        def get_device(self):
            return self.device

    assert getattr(BaseSchedulerNode.is_cpu, "_npusim_patched", False)
    for device, expected in [("cpu", True), ("npusim", True), ("cuda", False), (None, False)]:
        assert BaseSchedulerNode.is_cpu(Node(device and torch.device(device))) is expected


def test_registration_is_visible_to_dynamo_and_inductor():
    import torch._dynamo.device_interface as device_interface
    from torch._inductor.codegen.common import get_device_op_overrides, get_scheduling_for_device

    import torch_npu_sim.compile

    torch_npu_sim.compile.register_now()
    interface = device_interface.get_interface_for_device("npusim")
    assert interface.device_count() == torch.npusim.device_count()
    assert interface.get_device_properties("npusim:1").multi_processor_count > 0
    assert interface.current_stream() == torch.npusim.current_stream()
    with interface.device(1):
        assert interface.current_device() == 1
    assert interface.current_device() == 0
    assert get_scheduling_for_device("npusim") is not None
    assert get_device_op_overrides("npusim").device_guard(1) == "torch.npusim.device(1)"
