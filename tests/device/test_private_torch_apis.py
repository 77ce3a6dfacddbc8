"""The private torch APIs npusim relies on (torch_npu_sim/_private_torch.py) are still there.

Each listed API is checked for existence and shape (parameters, members) on the installed
torch, and the installed torch must be one the list was checked against; a failure names
the API. The package and csrc/ are scanned so that a private use missing from the list
fails here too.
"""
import ast
import os
import pathlib
import re

import pytest
import torch

from torch_npu_sim import _private_torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "torch_npu_sim"
TORCH_INCLUDE = pathlib.Path(torch.__file__).parent / "include"
# headers of torch's internals (not its public C++ API)
PRIVATE_INCLUDE = re.compile(
    r"#include\s*[<\"]((?:torch/csrc|ATen/native|ATen/core/dispatch|ATen/detail|c10/core/impl)/[^>\"]+)[>\"]")


@pytest.mark.parametrize("entry", _private_torch.APIS, ids=lambda entry: entry.name)
def test_private_api_is_still_there(entry):
    problems = _private_torch.problems(entry)
    assert not problems, f"torch {torch.__version__} changed a private API npusim relies on ({entry.used_in}: " \
                         f"{entry.why}): {'; '.join(problems)}"


@pytest.mark.parametrize("entry", _private_torch.APIS, ids=lambda entry: entry.name)
def test_private_api_was_checked_on_this_torch(entry):
    assert _private_torch.torch_version() in entry.versions, (
        f"{entry.name} (used in {entry.used_in}: {entry.why}) was checked on torch {entry.versions}, not "
        f"{torch.__version__}: re-check that use, then add the version in torch_npu_sim/_private_torch.py")


def test_the_patches_are_in_place():
    """Every patch over a private API is applied on this torch (none was skipped)."""
    import torch.distributed.distributed_c10d as c10d
    import torch.nn.attention.flex_attention as front_end
    from torch._C import DispatchKey
    from torch._higher_order_ops import flex_attention as flex_hop
    from torch._inductor.codegen.cpp_template import CppTemplate
    from torch._inductor.lowering import lowerings
    from torch._inductor.scheduler import BaseSchedulerNode

    import torch_npu_sim.compile

    torch_npu_sim.compile.register_now()
    patched = {
        "torch._inductor.scheduler:BaseSchedulerNode.is_cpu": BaseSchedulerNode.is_cpu._npusim_patched,
        "torch._inductor.codegen.cpp_template:CppTemplate.generate": CppTemplate.generate._npusim_patched,
        "torch.nn.attention.flex_attention:_validate_device": front_end._validate_device._npusim_flex_attention,
        "torch._inductor.lowering:lowerings":
            lowerings[torch.ops.higher_order.flex_attention]._npusim_flex_attention,
        "torch.distributed.distributed_c10d:_new_process_group_helper":
            c10d._new_process_group_helper._npusim_default_backend,
        "torch.distributed.distributed_c10d:_create_shrunk_process_group":
            c10d._create_shrunk_process_group._npusim_shrunk_group,
        "torch.optim.optimizer:Optimizer._accelerator_graph_capture_health_check":
            torch.optim.Optimizer._accelerator_graph_capture_health_check._npusim_patched,
    }
    assert DispatchKey.AutogradPrivateUse1 in flex_hop.py_kernels
    assert all(patched.values())
    listed = {entry.name for entry in _private_torch.APIS if entry.patched}
    assert listed == set(patched) | set(PATCHED_ON_DEMAND), "a patch is missing from this test or from the list"


# patches applied only while something runs, each checked by the test named here
PATCHED_ON_DEMAND = {
    "torch.utils._triton:triton_hash_with_backend": "test_triton_codegen_patches_apply_and_are_undone",
    "torch._inductor.runtime.triton_helpers:set_driver_to_gpu": "test_triton_codegen_patches_apply_and_are_undone",
}


def test_triton_codegen_patches_apply_and_are_undone():
    """npusim_codegen="triton" swaps these for one compilation only (compile/triton_codegen.py)."""
    pytest.importorskip("triton", reason="triton is not installed (the `triton` extra)")
    import torch._inductor.runtime.triton_helpers as triton_helpers
    import torch.utils._triton as torch_triton

    from torch_npu_sim.compile import triton_codegen

    originals = torch_triton.triton_hash_with_backend, triton_helpers.set_driver_to_gpu
    with triton_codegen.triton_mode():
        assert torch_triton.triton_hash_with_backend is triton_codegen._interpreter_hash
        assert triton_helpers.set_driver_to_gpu is triton_codegen._set_driver_to_gpu_noop
    assert (torch_triton.triton_hash_with_backend, triton_helpers.set_driver_to_gpu) == originals


def test_an_unlisted_api_is_refused():
    with pytest.raises(_private_torch.PrivateTorchApiError, match="not listed"):
        _private_torch.api("torch._inductor.nothing:here")


def test_a_changed_api_is_named():
    gone = _private_torch.PrivateApi("torch._inductor.lowering:no_such_thing", "x.py", "test")
    renamed = _private_torch.PrivateApi("torch._inductor.kernel.flex.flex_cpu:lower_cpu", "x.py", "test",
                                        params=("query", "no_such_parameter"))
    assert "torch._inductor.lowering:no_such_thing" in _private_torch.problems(gone)[0]
    assert "no_such_parameter" in _private_torch.problems(renamed)[0]


def test_an_unchecked_torch_is_refused_with_the_api_named(monkeypatch):
    monkeypatch.setattr(_private_torch, "torch_version", lambda: (3, 0))
    name = "torch._inductor.scheduler:BaseSchedulerNode.is_cpu"
    with pytest.raises(_private_torch.PrivateTorchApiError, match=re.escape(name)):
        _private_torch.require_checked_version((name,), "advice")
    with pytest.warns(RuntimeWarning, match=re.escape(name)):
        assert not _private_torch.patch_allowed((name,), "consequence")


# --- completeness: no private use outside the list -------------------------------------------

def _is_private(dotted: str) -> bool:
    parts = dotted.split(".")
    return parts[0] == "torch" and any(p.startswith("_") and not (p.startswith("__") and p.endswith("__"))
                                       for p in parts[1:])


def _private_references(source: str) -> set[str]:
    """Dotted torch paths with a private component: imports, attribute chains on imported
    names, and module names written as strings (post-import hooks)."""
    tree = ast.parse(source)
    aliases, found = {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for name in node.names:
                aliases[name.asname or name.name.split(".")[0]] = name.name if name.asname else name.name.split(".")[0]
                found.add(name.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for name in node.names:
                aliases[name.asname or name.name] = f"{node.module}.{name.name}"
                found.add(f"{node.module}.{name.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"torch(\.\w+)+",
                                                                                              node.value):
            found.add(node.value)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, root = [], node
            while isinstance(root, ast.Attribute):
                chain.append(root.attr)
                root = root.value
            if isinstance(root, ast.Name) and root.id in aliases:
                found.add(".".join([aliases[root.id], *reversed(chain)]))
    return {ref for ref in found if _is_private(ref)}


def test_the_scanner_finds_private_uses():
    source = ("import torch\nimport torch.distributed.distributed_c10d as c10d\nfrom torch._x.y import z\n"
              "c10d._hidden(1)\ntorch.nn.functional.relu\ntorch._C._thing\nHOOK = 'torch._dynamo.mod'\n")
    assert {"torch.distributed.distributed_c10d._hidden", "torch._x.y.z", "torch._C._thing",
            "torch._dynamo.mod"} <= _private_references(source)
    assert "torch.nn.functional.relu" not in _private_references(source)


def test_every_private_use_in_the_package_is_listed():
    listed = [entry.dotted for entry in _private_torch.APIS]
    unlisted = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_private_torch.py":
            continue
        for ref in _private_references(path.read_text()):
            # a module or object covers the uses of what it contains, and vice versa
            if not any(d == ref or d.startswith(ref + ".") or ref.startswith(d + ".") for d in listed):
                unlisted.append(f"{path.relative_to(ROOT)}: {ref}")
    assert not unlisted, "private torch APIs missing from torch_npu_sim/_private_torch.py:\n" + "\n".join(unlisted)


def test_every_private_header_of_the_extension_is_listed_and_installed():
    listed = {header for header, _, _ in _private_torch.CPP_PRIVATE_USES}
    used = {}
    for path in sorted((ROOT / "csrc").rglob("*")):
        if path.suffix in (".cpp", ".h"):
            for header in PRIVATE_INCLUDE.findall(path.read_text()):
                used.setdefault(header, []).append(str(path.relative_to(ROOT)))
    unlisted = {h: files for h, files in used.items() if h not in listed}
    assert not unlisted, f"private torch headers missing from CPP_PRIVATE_USES: {unlisted}"
    missing = [h for h in listed if not os.path.exists(TORCH_INCLUDE / h)]
    assert not missing, f"torch {torch.__version__} no longer installs {missing} (see CPP_PRIVATE_USES)"
