"""PyTorch's own CUDA-written module tests, run through the shim: the ``test_cuda`` method of
every module and criterion test in ``torch.testing._internal.common_nn`` (what torch's
test_nn.py runs on a CUDA machine) at float32, each of which builds the module on the CPU
and on "cuda" (.cuda(), device="cuda", torch.cuda's RNG) and compares outputs and gradients.

Prints one JSON line: totals and the failing tests with their errors.
"""
import json
import sys
import traceback
import unittest

import torch_npu_sim.transfer_cuda  # noqa: F401 - installs the shim before torch's test modules read torch.cuda

import torch
from torch.testing._internal import common_nn
from torch.testing._internal.common_utils import SEED, freeze_rng_state, set_rng_seed


class CudaWrittenNNTests(common_nn.NNTestCase):
    """The hooks test_nn.py's TestNN gives common_nn's tests (copied in shape)."""

    def _forward(self, module, input):
        with freeze_rng_state():
            return module(*input) if isinstance(input, tuple) else module(input)

    def _get_parameters(self, module):
        params = list(module.parameters())
        return params, [p.grad for p in params]

    def _zero_grad_parameters(self, module):
        for p in module.parameters():
            if p.grad is not None:
                with torch.no_grad():
                    p.grad.zero_()
                p.grad.detach_()

    def _backward(self, module, input, output, grad_output, create_graph=False):
        output.backward(grad_output, retain_graph=True, create_graph=create_graph)
        if isinstance(input, tuple):
            return tuple(i.grad.data if i.grad is not None else None for i in input)
        return input.grad.data if input.grad is not None else None

    def _forward_criterion(self, criterion, input, target, extra_args=None):
        extra_args = extra_args or ()
        if isinstance(input, tuple):
            return criterion(*(input + (target,) + extra_args))
        return criterion(input, target, *extra_args)

    def _backward_criterion(self, criterion, input, output, target, gradOutput=None, extra_args=None):
        extra_args = extra_args or ()
        input_tuple = input if isinstance(input, tuple) else (input,)
        output_tuple = output if isinstance(output, tuple) else (output,)
        for i in input_tuple:
            if i.grad is not None:
                i.grad.data.zero_()
        gradOutput = torch.ones(()) if gradOutput is None else gradOutput
        criterion(*(input_tuple + (target,) + extra_args)).backward(gradOutput.to(output_tuple[0]))
        return tuple(i.grad.data for i in input) if isinstance(input, tuple) else input.grad.data

    def runTest(self):  # unittest needs one to build an instance
        pass


def _with_constructor(params: dict) -> dict:
    # as test_nn.py does: a test names its module class by module_name
    params = dict(params)
    if "constructor" not in params:
        params["constructor"] = getattr(torch.nn, params.pop("module_name"))
    return params


def main() -> None:
    case = CudaWrittenNNTests()
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    failures = {}
    tests = [("module", common_nn.NewModuleTest(**_with_constructor(params))) for params in
             common_nn.module_tests + common_nn.get_new_module_tests()]
    tests += [("criterion", common_nn.CriterionTest(**_with_constructor(params)))
              for params in common_nn.criterion_tests]
    for kind, test in tests:
        set_rng_seed(SEED)  # as torch's TestCase.setUp does before each test
        try:
            if kind == "module":
                test.test_cuda(case)
            else:
                test.test_cuda(case, dtype=torch.float)
            totals["passed"] += 1
        except unittest.SkipTest:
            totals["skipped"] += 1
        except Exception as error:  # noqa: BLE001 - every failure is reported, with its name
            totals["failed"] += 1
            failures[test.get_name()] = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
            if "-v" in sys.argv:
                traceback.print_exc()
    print(json.dumps({"cuda_available": torch.cuda.is_available(), "total": len(tests), **totals,
                      "failures": failures}))


if __name__ == "__main__":
    main()
