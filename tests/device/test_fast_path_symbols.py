"""The add/sub/mul/div fast path finds the CPU kernels at run time, so the extension loads on
any build of torch; where a kernel cannot be found, the op takes the aliasing path with the
same results. NPUSIM_TEST_HIDE_SYMBOLS makes the lookup of matching symbols fail (the
situation of a torch built with other CPU kernel variants)."""
import glob
import json
import os
import platform
import shutil
import subprocess
import sys

import pytest

import torch_npu_sim

# every float case of the fast path (functional, in-place, alpha, broadcasting), in float32,
# float64 and bfloat16; results as bytes, so "the same" means bit for bit
PROGRAM = """
import json, torch
from torch_npu_sim import _C
torch.manual_seed(0)
results = {}
for dtype in (torch.float32, torch.float64, torch.bfloat16):
    a, b = torch.randn(5, 7, dtype=dtype), torch.randn(5, 7, dtype=dtype)
    row = torch.randn(7, dtype=dtype)
    cases = {
        "add": lambda x, y, r: x + y, "add_alpha": lambda x, y, r: torch.add(x, y, alpha=2.5),
        "sub": lambda x, y, r: x - y, "sub_alpha": lambda x, y, r: torch.sub(x, y, alpha=0.5),
        "mul": lambda x, y, r: x * y, "div": lambda x, y, r: x / y, "add_bcast": lambda x, y, r: x + r,
        "iadd": lambda x, y, r: x.clone().add_(y, alpha=3), "isub": lambda x, y, r: x.clone().sub_(r),
        "imul": lambda x, y, r: x.clone().mul_(y), "idiv": lambda x, y, r: x.clone().div_(r),
    }
    for name, fn in cases.items():
        cpu = fn(a, b, row)
        dev = fn(a.to("npusim"), b.to("npusim"), row.to("npusim"))
        assert dev.device.type == "npusim"
        results[f"{name}/{dtype}"] = [dev.cpu().view(torch.uint8).tolist() if dtype != torch.bfloat16
                                      else dev.cpu().view(torch.int16).tolist(),
                                      torch.equal(dev.cpu(), cpu)]
print(json.dumps({"fast_path": _C._pointwise_fast_path(), "results": results}))
"""


def run(hide: str | None) -> dict:
    """PROGRAM in a fresh interpreter (the lookup happens once per process)."""
    env = {k: v for k, v in os.environ.items() if k != "NPUSIM_TEST_HIDE_SYMBOLS"}
    if hide is not None:
        env["NPUSIM_TEST_HIDE_SYMBOLS"] = hide
    r = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def normal():
    return run(None)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the fast path's kernels are looked up on x86-64 only")
def test_fast_path_found_and_used(normal):
    fast = normal["fast_path"]
    assert (fast["add"], fast["mul"], fast["div"]) == (True, True, True)
    assert fast["calls"] == 33  # every case of PROGRAM (11 ops x 3 dtypes) took it
    assert all(equal for _, equal in normal["results"].values())


def test_missing_symbols_take_the_aliasing_path_with_the_same_results(normal):
    hidden = run("*")
    assert hidden["fast_path"] == {"add": False, "mul": False, "div": False, "calls": 0}
    assert hidden["results"] == normal["results"]  # bit for bit, and equal to the CPU's
    assert all(equal for _, equal in hidden["results"].values())


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the fast path's kernels are looked up on x86-64 only")
@pytest.mark.parametrize("hide, found, calls", [
    ("mul_stub", {"add": True, "mul": False, "div": True}, 27),  # 6 mul cases fall back
    ("AVX2E", {"add": False, "mul": False, "div": False}, 0),  # a build without this variant
    ("DispatchStubImpl12get_call_ptr", {"add": False, "mul": False, "div": False}, 0),
    ("div_true_stub_DECLARE_DISPATCH_typeEE6AVX512E,add_stubE", {"add": False, "mul": True, "div": False}, 6),
])
def test_each_missing_symbol_disables_only_its_ops(normal, hide, found, calls):
    out = run(hide)
    assert out["fast_path"] == dict(found, calls=calls)
    assert out["results"] == normal["results"]


def test_extension_does_not_link_cpu_kernel_variants():
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed: cannot list the extension's undefined symbols")
    library = glob.glob(os.path.join(os.path.dirname(torch_npu_sim.__file__), "_C*.so"))
    assert library, "the built extension was not found"
    undefined = subprocess.run([nm, "-D", "--undefined-only", library[0]], capture_output=True, text=True,
                               check=True).stdout
    variant_refs = [line for line in undefined.splitlines()
                    if "DispatchStubImpl" in line or any(v in line for v in ("7DEFAULTE", "4AVX2E", "6AVX512E"))]
    assert variant_refs == []
