"""torch_npu_sim.transfer_cuda in process: device mapping, torch.cuda, coverage, undo."""
import io
import re

import pytest
import torch
from hypothesis import given, settings, strategies as st

import torch_npu_sim.transfer_cuda as transfer_cuda
from torch_npu_sim.transfer_cuda import _cuda_module, _devices, _report, _torch_functions

transfer_cuda.uninstall()  # importing installs; each test installs it for itself


@pytest.fixture
def shim():
    transfer_cuda.install()
    try:
        yield transfer_cuda
    finally:
        transfer_cuda.uninstall()


def _expected(text: str):
    match = re.fullmatch(r"cuda(?::([0-9]+))?", text)
    if not match or not text.isascii():
        return text
    return "npusim" if match.group(1) is None else f"npusim:{int(match.group(1))}"


@given(st.one_of(st.text(max_size=8), st.from_regex(r"cuda(:[0-9]{1,3})?", fullmatch=True),
                 st.sampled_from(["cuda:", "cuda:-1", "cuda:1:2", "CUDA", "cpu:0", "npusim:1", "cuda ", "cuda:٣"])))
def test_only_cuda_device_strings_are_mapped_and_keep_their_index(text):
    assert _devices.map_device(text) == _expected(text)


@given(st.lists(st.sampled_from(["cpu:gloo", "cuda:nccl", "cuda:gloo", "npusim:npusim", "cpu:nccl"]),
                min_size=1, max_size=3, unique=True) | st.sampled_from(["nccl", "NCCL", "gloo", "npusim", "mpi"]))
def test_nccl_backend_specs_become_npusim(spec):
    text = spec if isinstance(spec, str) else ",".join(spec)
    mapped = _devices.map_backend(text)
    if ":" not in text:
        assert mapped == ("npusim" if text.lower() == "nccl" else text)
    else:
        expected = [f"{'npusim' if d == 'cuda' else d}:{'npusim' if b == 'nccl' else b}"
                    for d, b in (part.split(":") for part in text.split(","))]
        assert mapped.split(",") == expected


DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.int64, torch.int32]
FACTORIES = {
    "zeros": lambda d, t: torch.zeros(3, 2, dtype=t, device=d),
    "ones": lambda d, t: torch.ones(2, dtype=t, device=d),
    "full": lambda d, t: torch.full((2, 2), 7, dtype=t, device=d),
    "arange": lambda d, t: torch.arange(5, dtype=t, device=d),
    "eye": lambda d, t: torch.eye(3, dtype=t, device=d),
    "tensor": lambda d, t: torch.tensor([1, 2, 3], dtype=t, device=d),
    "as_tensor": lambda d, t: torch.as_tensor([4, 5], dtype=t, device=d),
    "asarray": lambda d, t: torch.asarray([6, 7], dtype=t, device=d),
    "empty+fill": lambda d, t: torch.empty(4, dtype=t, device=d).fill_(3),
    "zeros_like": lambda d, t: torch.zeros_like(torch.ones(2, dtype=t), device=d),
    "new_full": lambda d, t: torch.ones(1, dtype=t).new_full((2,), 5, device=d),
    "to": lambda d, t: torch.arange(4).to(d, dtype=t),
    "to(kw)": lambda d, t: torch.arange(4, dtype=t).to(device=d),
    "cuda()": lambda d, t: torch.arange(3, dtype=t).cuda(d),
    "Linear(device=)": lambda d, t: torch.nn.Linear(2, 2, device=d, dtype=torch.float64).weight.detach().zero_().to(t),
}
DEVICES = {"cuda": ("cuda", 0), "cuda:1": ("cuda:1", 1), "device('cuda', 1)": (lambda: torch.device("cuda", 1), 1),
           "device('cuda:2')": (lambda: torch.device("cuda:2"), 2), "index 1": (1, 1)}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(FACTORIES)), st.sampled_from(sorted(DEVICES)), st.sampled_from(DTYPES))
def test_factories_and_moves_land_on_npusim_with_dtype_and_values_unchanged(factory, device, dtype):
    spelled, index = DEVICES[device]
    if factory != "cuda()" and isinstance(spelled, int):
        return  # a bare index means the accelerator's device with or without the shim
    transfer_cuda.install()
    try:
        result = FACTORIES[factory](spelled() if callable(spelled) else spelled, dtype)
    finally:
        transfer_cuda.uninstall()
    reference = torch.arange(3, dtype=dtype) if factory == "cuda()" else FACTORIES[factory]("cpu", dtype)
    assert result.device == torch.device("npusim", index if index is not None else torch.npusim.current_device())
    assert result.dtype == dtype == reference.dtype
    assert torch.equal(result.cpu(), reference)


def test_module_cuda_autocast_and_grad_scaler_act_on_npusim(shim):
    model = torch.nn.Linear(4, 4).double().cuda()
    assert next(model.parameters()).device == torch.device("npusim:0")
    assert next(model.parameters()).dtype == torch.float64  # nothing becomes float32
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert torch.nn.Linear(4, 4).cuda()(torch.ones(2, 4, device="cuda")).dtype == torch.bfloat16
    with torch.cuda.amp.autocast():
        assert torch.is_autocast_enabled("npusim")
    assert torch.amp.GradScaler("cuda")._device == "npusim"
    assert torch.Generator(device="cuda").device == torch.device("npusim:0")
    assert isinstance(torch.device("cuda"), torch.device) and torch.device("cuda:3") == torch.device("npusim:3")


def test_torch_cuda_is_served_by_npusim(shim):
    assert torch.cuda.is_available() and torch.cuda.device_count() == torch.npusim.device_count()
    x = torch.ones(1024, device="cuda")
    assert torch.cuda.memory_allocated("cuda:0") == torch.npusim.memory_allocated(0) > 0
    assert torch.cuda.get_device_properties("cuda:0").name == torch.npusim.get_device_name(0)
    stream = torch.cuda.Stream(device="cuda:0", priority=-1)
    assert isinstance(stream, torch.cuda.Stream) and isinstance(stream, torch.npusim.Stream)
    with torch.cuda.stream(stream):
        y = x * 2
    torch.cuda.current_stream().wait_stream(stream)
    assert y.sum().item() == 2048
    with torch.cuda.device(1):
        assert torch.cuda.current_device() == 1 == torch.npusim.current_device()
    torch.cuda.manual_seed(3)
    assert torch.equal(torch.cuda.get_rng_state(), torch.npusim.get_rng_state())
    assert torch.cuda.memory_cached() == torch.npusim.memory_reserved()
    graph = torch.cuda.CUDAGraph()
    assert isinstance(graph, torch.npusim.NPUGraph)


def test_nvtx_ranges_are_profiler_ranges(shim):
    with torch.profiler.profile() as prof:
        torch.cuda.nvtx.range_push("outer-step")
        with torch.cuda.nvtx.range("inner-{}", 1):
            torch.ones(4, device="cuda").sum()
        torch.cuda.nvtx.range_pop()
    names = {event.name for event in prof.events()}
    assert {"outer-step", "inner-1"} <= names


def test_every_unmapped_torch_cuda_name_raises_naming_itself(shim):
    raising = [entry for entry in _cuda_module.classify() if entry.kind == _cuda_module.RAISES]
    assert raising, "torch.cuda always has CUDA-only calls"
    for entry in raising:
        with pytest.raises(transfer_cuda.UnsupportedCudaFeature, match=re.escape(f"torch.cuda.{entry.name} ")):
            getattr(torch.cuda, entry.name)()
        if isinstance(getattr(torch.cuda, entry.name), type):
            assert not isinstance(torch.ones(1), getattr(torch.cuda, entry.name))
    with pytest.raises(transfer_cuda.UnsupportedCudaFeature, match="torch.cuda.DoubleTensor"):
        torch.cuda.DoubleTensor([1.0])


def test_every_public_torch_cuda_name_is_classified():
    classified = {entry.name: entry.kind for entry in _cuda_module.classify()}
    assert set(torch.cuda.__all__) <= set(classified)
    kinds = {_cuda_module.MAPPED, _cuda_module.EQUIVALENT, _cuda_module.RAISES, _cuda_module.LEFT,
             _cuda_module.SUBMODULE_MAPPED, _cuda_module.SUBMODULE_LEFT}
    assert set(classified.values()) <= kinds


def test_every_device_taking_aten_operator_is_handled():
    """Fails when torch adds an operator with a Device argument that no mapped callable exposes."""
    plan = _torch_functions.plan()
    originals = [vars(o).get(n) if isinstance(o, type) else getattr(o, n) for o, n, *_ in plan]
    transfer_cuda.install()
    try:
        for (owner, name, _, _, where), original in zip(plan, originals):
            current = vars(owner).get(name) if isinstance(owner, type) else getattr(owner, name)
            assert current is not original, f"{where}.{name} is not replaced while the shim is installed"
    finally:
        transfer_cuda.uninstall()
    figures = _report.coverage()
    assert figures["aten_device_operators_unhandled"] == [], (
        "ATen operators with a Device argument that the shim does not map (add where torch exposes them, "
        "or to NO_PYTHON_DEVICE_ARGUMENT with why): " + ", ".join(figures["aten_device_operators_unhandled"]))
    assert figures["aten_device_operators_mapped"] >= 50


def test_install_is_idempotent_and_uninstall_restores_every_attribute():
    plan = _torch_functions.plan()
    before = {(id(o), n): (vars(o).get(n, "absent") if isinstance(o, type) else getattr(o, n)) for o, n, *_ in plan}
    cuda_before = dict(vars(torch.cuda))
    transfer_cuda.install()
    count = sum(map(len, transfer_cuda.installed_patches().values()))
    transfer_cuda.install()
    assert sum(map(len, transfer_cuda.installed_patches().values())) == count and transfer_cuda.is_installed()
    transfer_cuda.uninstall()
    after = {(id(o), n): (vars(o).get(n, "absent") if isinstance(o, type) else getattr(o, n)) for o, n, *_ in plan}
    assert all(after[key] is value for key, value in before.items())
    assert dict(vars(torch.cuda)) == cuda_before
    assert not torch.cuda.is_available() and not transfer_cuda.is_installed()
    with pytest.raises((RuntimeError, AssertionError), match="Torch not compiled with CUDA"):
        torch.zeros(1, device="cuda")


def _double(x: torch.Tensor) -> torch.Tensor:
    return x * 2.0


def test_torchscript_and_float64_are_left_alone(shim):
    script = torch.jit.script
    scripted = torch.jit.script(_double)
    assert torch.jit.script is script
    double = torch.arange(3, dtype=torch.float64).cuda()
    assert double.dtype == torch.float64 and torch.equal(scripted(double).cpu(), torch.arange(3.0, dtype=torch.float64) * 2)
    assert torch.randn(4, device="cuda", dtype=torch.float64).dtype == torch.float64


def test_map_location_restores_cuda_locations_on_npusim(shim):
    buffer = io.BytesIO()
    torch.save({"a": torch.arange(4.0, device="cuda:1"), "b": torch.ones(2, dtype=torch.float64)}, buffer)
    for location, device_a, device_b in (("cuda:0", "npusim:0", "npusim:0"), (None, "npusim:1", "cpu"),
                                         ({"cpu": "cuda:2"}, "npusim:1", "npusim:2"),
                                         (lambda storage, loc: None, "npusim:1", "cpu"),
                                         (torch.device("cuda", 3), "npusim:3", "npusim:3")):
        buffer.seek(0)
        loaded = torch.load(buffer, map_location=location)
        assert (str(loaded["a"].device), str(loaded["b"].device)) == (device_a, device_b), location
        assert loaded["b"].dtype == torch.float64 and torch.equal(loaded["a"].cpu(), torch.arange(4.0))
    # a checkpoint written on a CUDA machine records "cuda:N": restored on npusim:N
    storage = torch.UntypedStorage(8)
    assert _devices.map_location(None)(storage, "cuda:1").device == torch.device("npusim:1")


def test_nccl_process_groups_are_npusim(shim):
    import torch.distributed as dist

    assert dist.is_nccl_available() and dist.is_backend_available("nccl")
    store = dist.HashStore()
    dist.init_process_group("nccl", store=store, rank=0, world_size=1)
    try:
        assert dist.get_backend() == "npusim"
        t = torch.ones(3, device="cuda")
        dist.all_reduce(t)
        assert t.device.type == "npusim" and t.tolist() == [1.0, 1.0, 1.0]
        group = dist.new_group(backend="cpu:gloo,cuda:nccl")
        assert dist.get_backend(group) == "npusim" or "npusim" in str(dist.get_backend_config(group))
    finally:
        dist.destroy_process_group()


def test_torch_compile_of_cuda_code_equals_eager(shim):
    """torch's own code asks torch.cuda too while the shim is on (Inductor's cache key reads the
    device properties); compiled CUDA-written code still runs on npusim."""
    def step(x):
        return torch.zeros(3, device="cuda") + torch.sin(x).double() * 2

    x = torch.linspace(0, 1, 3).cuda()
    compiled = torch.compile(step, backend="npusim")(x)
    assert compiled.device == torch.device("npusim:0") and compiled.dtype == torch.float64
    assert torch.equal(compiled.cpu(), step(x).cpu())
