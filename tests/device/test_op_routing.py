"""Operators registered after npusim loaded (another library's custom ops) reach npusim
correctly: an op with only a CPU kernel runs it through the zero-copy fallback, and an op
with a CompositeExplicitAutograd kernel beside its CPU kernel runs the CPU kernel, as the
ATen ops present at import do (its composite kernel is made to give other numbers, so the
test sees which one ran). Each case runs in a fresh interpreter, where `import torch` has
loaded npusim before the op exists."""
import json

PRELUDE = """
import json, warnings
import torch, torch_npu_sim
from torch_npu_sim import _C
out = {}

def run_on_npusim(op, x):
    before = _C._fallback_calls()
    y = op(x.to("npusim"))
    return {"device": str(y.device), "values": y.cpu().tolist(), "fallback": _C._fallback_calls() > before}
"""


def run(fresh_python, code: str) -> dict:
    r = fresh_python(PRELUDE + code)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_cpu_kernel_only(fresh_python):
    out = run(fresh_python, """
lib = torch.library.Library("otherlib", "DEF")
lib.define("twice(Tensor x) -> Tensor")
lib.impl("twice", lambda x: x * 2, "CPU")
x = torch.arange(4.0)
out["cpu"] = torch.ops.otherlib.twice(x).tolist()
out["npusim"] = run_on_npusim(torch.ops.otherlib.twice, x)
print(json.dumps(out))
""")
    assert out["cpu"] == [0.0, 2.0, 4.0, 6.0]
    assert out["npusim"] == {"device": "npusim:0", "values": [0.0, 2.0, 4.0, 6.0], "fallback": True}


def test_composite_and_cpu_kernel_runs_the_cpu_kernel(fresh_python):
    # both registration orders; the composite kernel adds 100 so that it shows
    out = run(fresh_python, """
lib = torch.library.Library("otherlib", "DEF")
for name, order in [("cpu_first", ("CPU", "CompositeExplicitAutograd")),
                    ("composite_first", ("CompositeExplicitAutograd", "CPU"))]:
    lib.define(f"{name}(Tensor x) -> Tensor")
    for key in order:
        lib.impl(name, (lambda x: x * 2) if key == "CPU" else (lambda x: x * 2 + 100), key)
    op = getattr(torch.ops.otherlib, name)
    x = torch.arange(3.0)
    out[name] = {"cpu": op(x).tolist(), "npusim": run_on_npusim(op, x), "routed": _C._op_is_routed(f"otherlib::{name}")}
# an ATen op routed at import behaves the same way
out["aten_routed"] = _C._op_is_routed("aten::native_layer_norm")
print(json.dumps(out))
""")
    for name in ("cpu_first", "composite_first"):
        assert out[name]["cpu"] == [0.0, 2.0, 4.0], name
        assert out[name]["npusim"] == {"device": "npusim:0", "values": [0.0, 2.0, 4.0], "fallback": True}, name
        assert out[name]["routed"] is True, name
    assert out["aten_routed"] is True


def test_custom_op_with_default_and_cpu_kernels(fresh_python):
    out = run(fresh_python, """
@torch.library.custom_op("otherlib::scaled", mutates_args=())
def scaled(x: torch.Tensor) -> torch.Tensor:
    return x * 3 + 100          # the default (CompositeExplicitAutograd) kernel

@scaled.register_kernel("cpu")
def _(x):
    return x * 3

x = torch.arange(3.0)
out["cpu"] = scaled(x).tolist()
out["npusim"] = run_on_npusim(scaled, x)
print(json.dumps(out))
""")
    assert out["cpu"] == [0.0, 3.0, 6.0]
    assert out["npusim"] == {"device": "npusim:0", "values": [0.0, 3.0, 6.0], "fallback": True}


def test_composite_only_op_keeps_its_composite_kernel(fresh_python):
    out = run(fresh_python, """
lib = torch.library.Library("otherlib", "DEF")
lib.define("generic(Tensor x) -> Tensor")
lib.impl("generic", lambda x: x + 1, "CompositeExplicitAutograd")
y = torch.ops.otherlib.generic(torch.zeros(2, device="npusim"))
out.update(device=str(y.device), values=y.cpu().tolist(), routed=_C._op_is_routed("otherlib::generic"))
print(json.dumps(out))
""")
    assert out == {"device": "npusim:0", "values": [1.0, 1.0], "routed": False}


def test_own_npusim_kernel_replaces_the_routing_without_warning(fresh_python):
    out = run(fresh_python, """
lib = torch.library.Library("otherlib", "DEF")
lib.define("f(Tensor x) -> Tensor")
lib.impl("f", lambda x: x * 2, "CPU")
lib.impl("f", lambda x: x * 2 + 100, "CompositeExplicitAutograd")
out["routed_before"] = _C._op_is_routed("otherlib::f")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    lib.impl("f", lambda x: torch.full_like(x, 7.0), "PrivateUse1")
out["warnings"] = [str(w.message) for w in caught]
out["routed_after"] = _C._op_is_routed("otherlib::f")
out["npusim"] = torch.ops.otherlib.f(torch.zeros(2, device="npusim")).cpu().tolist()
print(json.dumps(out))
""")
    assert out["routed_before"] is True and out["routed_after"] is False
    assert out["warnings"] == []
    assert out["npusim"] == [7.0, 7.0]


def test_removed_and_redefined_op_is_considered_afresh(fresh_python):
    out = run(fresh_python, """
with torch.library._scoped_library("otherlib", "DEF") as lib:
    lib.define("g(Tensor x) -> Tensor")
    lib.impl("g", lambda x: x * 2, "CPU")
    lib.impl("g", lambda x: x * 2 + 100, "CompositeExplicitAutograd")
    out["first"] = run_on_npusim(torch.ops.otherlib.g, torch.ones(2))["values"]
with torch.library._scoped_library("otherlib", "DEF") as lib:
    lib.define("g(Tensor x) -> Tensor")   # now only a composite kernel
    lib.impl("g", lambda x: x - 1, "CompositeExplicitAutograd")
    y = torch.ops.otherlib.g(torch.ones(2, device="npusim"))
    out["second"] = y.cpu().tolist()
    out["routed"] = _C._op_is_routed("otherlib::g")
print(json.dumps(out))
""")
    assert out["first"] == [2.0, 2.0]
    assert out["second"] == [0.0, 0.0] and out["routed"] is False


def test_kernels_registered_below_torch_library_are_routed_at_the_next_fallback(fresh_python):
    # A C++ library's TORCH_LIBRARY blocks register straight with the dispatcher: simulated
    # here through the dispatcher module under torch.library (no Library.impl involved).
    out = run(fresh_python, """
lib = torch.library.Library("otherlib", "DEF")
lib.define("h(Tensor x) -> Tensor")
lib.m.impl("h", "CPU", lambda x: x * 2, False)
lib.m.impl("h", "CompositeExplicitAutograd", lambda x: x * 2 + 100, False)
out["before"] = _C._op_is_routed("otherlib::h")
torch.ones(2, device="npusim").cumsum(0)          # any call through the fallback
out["after"] = _C._op_is_routed("otherlib::h")
out["npusim"] = torch.ops.otherlib.h(torch.ones(2, device="npusim")).cpu().tolist()
print(json.dumps(out))
""")
    assert out["before"] is False and out["after"] is True
    assert out["npusim"] == [2.0, 2.0]
