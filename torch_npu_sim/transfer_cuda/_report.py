"""The API-coverage report: what the shim maps, what raises, and what it cannot see."""
from __future__ import annotations

import json

import torch

from . import _cuda_module, _discovery, _torch_functions

# What the shim does not do, or cannot do; the README's gap list is this list.
GAPS = (
    "torch.device('cuda') objects made before the shim was installed, or by code holding torch's own "
    "torch.device class (from torch import device), stay CUDA devices until they reach a mapped call",
    "tensors report their real device: x.device.type == 'npusim' and x.is_cuda is False, so code that "
    "branches on them takes its non-CUDA path",
    "torch.version.cuda stays None, torch.backends.cudnn.is_available() False; dist.get_backend() answers "
    "'npusim', not 'nccl'",
    "CUDA-only kernels of other libraries (flash-attn, bitsandbytes, apex, ...) cannot run; calls into them "
    "fail with their own errors",
    "torch.cuda submodules other than amp and nvtx (jiterator, nccl, sparse, tunable, gds, green_contexts, "
    "profiler, memory/streams/random/graphs accessed as submodules) are not mapped",
    "legacy CUDA tensor types (torch.cuda.FloatTensor, Tensor.type('torch.cuda.FloatTensor')) are not mapped: "
    "the former raise UnsupportedCudaFeature, the latter torch's own error",
    "CUDA-only objects' attributes (Stream.cuda_stream, Event.ipc_handle, device properties beyond name, "
    "major, minor, total_memory, multi_processor_count) are missing on their npusim counterparts",
    "device strings inside TorchScript code (torch.jit.script) are not mapped; TorchScript itself is left on",
    "a subclass of a stand-in class made after install (class S(torch.cuda.Stream)) builds the base class",
    "nn.DataParallel over several devices fails (torch's CUDA-only scatter and gather); transformers' Trainer "
    "picks it when torch.cuda.device_count() > 1 in one process, so give it one device (NPUSIM_DEVICE_COUNT=1) "
    "or launch it with torchrun",
    "torch's own code that asks torch.cuda while the shim is on sees npusim (Inductor's cache key reads "
    "get_device_properties(...).gcnArchName, given the device name); such paths are checked for torch.compile only",
    "custom CUDA extensions are not intercepted: building one needs nvcc, loading one needs CUDA's libraries, "
    "and each fails with its own error",
)


def coverage() -> dict:
    """Coverage figures, derived from the installed torch."""
    aten = _discovery.aten_device_ops()
    unexposed = sorted(op for op in aten if op not in _discovery.NO_PYTHON_DEVICE_ARGUMENT
                       and not _discovery.exposures(op))
    plan = _torch_functions.plan()
    by_kind: dict[str, list[str]] = {}
    for owner, name, _, kind, where in plan:
        by_kind.setdefault(kind, []).append(f"{where}.{name}" if name != "__init__" else where)
    cuda = _cuda_module.classify()
    cuda_kinds: dict[str, list[str]] = {}
    for entry in cuda:
        cuda_kinds.setdefault(entry.kind, []).append(entry.name)
    return {
        "torch": torch.__version__,
        "aten_device_operators": len(aten),
        "aten_device_operators_mapped": len(aten) - len(unexposed) - len(_discovery.NO_PYTHON_DEVICE_ARGUMENT),
        "aten_device_operators_without_python_device_argument": dict(_discovery.NO_PYTHON_DEVICE_ARGUMENT),
        "aten_device_operators_unhandled": unexposed,
        "aten_private_device_operators_not_mapped": len(_discovery.private_aten_device_ops()),
        "device_taking_callables_mapped": {kind: sorted(names) for kind, names in by_kind.items()},
        "torch_cuda_names": len(cuda),
        "torch_cuda": {kind: sorted(names) for kind, names in cuda_kinds.items()},
        "distributed": {"nccl": "npusim (init_process_group, new_group, ... backend=)",
                        "cpu:gloo,cuda:nccl": "cpu:gloo,npusim:npusim", "is_nccl_available()": True},
        "backends_switches": "torch.backends.cuda / torch.backends.cudnn settings are accepted and select "
                             "nothing (npusim runs the CPU's kernels)",
        "gaps": list(GAPS),
    }


def format_report(figures: dict) -> str:
    lines = [f"torch_npu_sim.transfer_cuda coverage (torch {figures['torch']})", ""]
    lines.append(f"ATen operators with a Device argument: {figures['aten_device_operators']}; "
                 f"mapped through their Python callables: {figures['aten_device_operators_mapped']}; "
                 f"no Python device argument: {len(figures['aten_device_operators_without_python_device_argument'])}; "
                 f"unhandled: {len(figures['aten_device_operators_unhandled'])} "
                 f"{figures['aten_device_operators_unhandled'] or ''}")
    lines.append(f"  (private aten::_* operators with a Device argument, not user API, not mapped: "
                 f"{figures['aten_private_device_operators_not_mapped']})")
    mapped = figures["device_taking_callables_mapped"]
    lines.append(f"Device-taking torch callables replaced: {sum(map(len, mapped.values()))}")
    for kind, names in mapped.items():
        lines.append(f"  {kind}: {len(names)}: {', '.join(names)}")
    lines.append("")
    lines.append(f"torch.cuda public names: {figures['torch_cuda_names']}")
    for kind, names in figures["torch_cuda"].items():
        lines.append(f"  {kind}: {len(names)}: {', '.join(names)}")
    lines.append("")
    lines.append("Distributed: " + "; ".join(f"{k} -> {v}" for k, v in figures["distributed"].items()))
    lines.append("Backends: " + figures["backends_switches"])
    lines.append("")
    lines.append("Gaps:")
    lines += [f"  - {gap}" for gap in figures["gaps"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m torch_npu_sim.transfer_cuda",
                                     description="API coverage of the CUDA-to-npusim shim")
    parser.add_argument("--report", action="store_true", help="print the coverage report")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if not (args.report or args.json):
        parser.error("nothing to do: give --report or --json")
    figures = coverage()
    print(json.dumps(figures, indent=1) if args.json else format_report(figures))
    return 0
