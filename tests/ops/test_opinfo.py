"""Conformance to PyTorch's OpInfo database: every sample input that runs on the CPU
must give the same result on npusim (PyTorch's tolerances), forward and backward.

For each OpInfo: up to SAMPLES_PER_OP float32 samples (forward and, where the op
supports autograd, the gradients of its inputs), the in-place variant on float32, and
up to EXTRA_SAMPLES samples in bfloat16, int64 and bool where the op supports them.
Samples are generated on npusim (so tensors an op wants on the CPU stay there, and
`device=` arguments name npusim) and copied to the CPU for the reference run. A sample
that fails on the CPU is skipped (reason counted); ops whose outputs are random (they
call an ATen op tagged nondeterministic_seeded: npusim's generator is not the CPU's)
are skipped, and ops returning uninitialised memory are compared on metadata only.
Totals are printed at the end.
"""
import time

import pytest
import torch
from torch.testing._internal.common_methods_invocations import op_db
from torch.testing._internal.opinfo.core import SampleInput
from torch.utils._python_dispatch import TorchDispatchMode

import opinfo_totals as totals

SAMPLES_PER_OP = 4
EXTRA_SAMPLES = 2
EXTRA_DTYPES = (torch.bfloat16, torch.int64, torch.bool)
DEVICE = "npusim"

# Ops whose values are undefined (uninitialised memory): compared on metadata only.
UNINITIALISED = {"empty", "empty_like", "new_empty", "new_empty_strided", "empty_strided", "empty_permuted",
                 "nn.functional.dropout", "nn.functional.dropout2d"}

# Known differences, each with its reason. Checked strictly: an op listed here that
# passes fails the run, so the list cannot go stale.
EXPECTED_FAILURES: dict = {
    "to_sparse": "sparse layouts: npusim tensors are dense (strided) only",
}


def cpu_twin(x):
    """A CPU copy with the same storage layout (size, strides, offset), so that ops that
    look at the storage (as_strided) see the same thing."""
    if x.is_conj() or x.is_neg() or x.layout != torch.strided:
        return x.detach().cpu()
    storage = x.detach().untyped_storage().cpu()
    return torch.empty(0, dtype=x.dtype).set_(storage, x.storage_offset(), x.size(), x.stride())


def to_reference(x):
    """The CPU twin of a sample argument: npusim tensors copied (leaves stay leaves),
    npusim devices named cpu."""
    if isinstance(x, torch.Tensor):
        if x.device.type != DEVICE:
            return x
        y = cpu_twin(x)
        return y.requires_grad_(True) if x.requires_grad else y
    if isinstance(x, torch.device) and x.type == DEVICE:
        return torch.device("cpu")
    if isinstance(x, str) and x.split(":")[0] == DEVICE:
        return "cpu"
    if isinstance(x, (list, tuple)):
        return type(x)(to_reference(v) for v in x)
    if isinstance(x, dict):
        return {k: to_reference(v) for k, v in x.items()}
    return x


def to_cpu(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, (list, tuple)):
        return type(x)(to_cpu(v) for v in x)
    if isinstance(x, dict):
        return {k: to_cpu(v) for k, v in x.items()}
    return x


def tensors_in(x):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from tensors_in(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from tensors_in(v)


def leaves(sample):
    return [t for t in tensors_in([sample.input, sample.args, sample.kwargs]) if t.requires_grad]


def run(op_fn, sample):
    return op_fn(sample.input, *sample.args, **sample.kwargs)


def reference_sample(sample):
    return SampleInput(to_reference(sample.input), args=to_reference(sample.args), kwargs=to_reference(sample.kwargs),
                       output_process_fn_grad=sample.output_process_fn_grad)


class SeededOpDetector(TorchDispatchMode):
    """Notes whether anything drew random numbers (ops tagged nondeterministic_seeded)."""

    def __init__(self):
        super().__init__()
        self.seeded = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if torch.Tag.nondeterministic_seeded in func.tags:
            self.seeded = True
        return func(*args, **(kwargs or {}))


def run_reference(op_fn, sample):
    """The CPU result, and whether it depends on random numbers. (The detecting run is
    a separate one: under a dispatch mode some ops take other decompositions.)"""
    result = run(op_fn, sample)
    detector = SeededOpDetector()
    with detector:
        run(op_fn, sample)
    return result, detector.seeded


def scalar_for_grad(t):
    return t.real.sum() + t.imag.sum() if t.is_complex() else t.sum()


def check_devices(expected, actual):
    for e, a in zip(tensors_in(expected), tensors_in(actual)):
        want = DEVICE if e.device.type == "cpu" else e.device.type
        if e.device.type == "cpu" and not e.is_floating_point() and e.dim() == 0 and a.device.type == "cpu":
            continue
        assert a.device.type == want, f"an output landed on {a.device}, expected {want}"


def compare_sample(op, op_fn, sample, with_grad):
    """`sample` lives on npusim. Returns None if it passed, or a skip reason; raises on a mismatch."""
    if any(t.layout != torch.strided for t in tensors_in([sample.input, sample.args, sample.kwargs])):
        return "sparse input: npusim tensors are dense (strided) only"
    reference = reference_sample(sample)
    try:
        expected, seeded = run_reference(op_fn, reference)
    except Exception as e:  # noqa: BLE001 - the CPU rejects this sample: nothing to compare
        return f"fails on CPU ({type(e).__name__})"
    if op.name in UNINITIALISED:
        actual = run(op_fn, sample)
        for a, e in zip(tensors_in(actual), tensors_in(expected)):
            assert (a.shape, a.dtype, a.device.type) == (e.shape, e.dtype, DEVICE)
        return None
    if seeded:
        return "random: draws from a generator (npusim's stream differs from the CPU's)"
    actual = run(op_fn, sample)
    check_devices(expected, actual)
    torch.testing.assert_close(to_cpu(actual), to_cpu(expected), equal_nan=True, check_device=False)
    if not with_grad:
        return None
    cpu_leaves, dev_leaves = leaves(reference), leaves(sample)
    outs_cpu = [t for t in tensors_in(reference.output_process_fn_grad(expected)) if t.requires_grad]
    outs_dev = [t for t in tensors_in(sample.output_process_fn_grad(actual)) if t.requires_grad]
    if not outs_cpu or not cpu_leaves:
        return None
    try:
        grads_cpu = torch.autograd.grad([scalar_for_grad(o) for o in outs_cpu], cpu_leaves, allow_unused=True)
    except Exception as e:  # noqa: BLE001 - no CPU gradient to compare against
        return f"backward fails on CPU ({type(e).__name__})"
    grads_dev = torch.autograd.grad([scalar_for_grad(o) for o in outs_dev], dev_leaves, allow_unused=True)
    for g_dev, g_cpu in zip(grads_dev, grads_cpu):
        assert (g_dev is None) == (g_cpu is None)
        if g_cpu is not None:
            assert g_dev.device.type == DEVICE, f"a gradient landed on {g_dev.device}"
            torch.testing.assert_close(to_cpu(g_dev), g_cpu, equal_nan=True, check_device=False,
                                       msg=lambda m: f"gradient mismatch: {m}")
    return None


def samples(op, dtype, requires_grad, limit):
    out = []
    torch.manual_seed(0)
    try:
        for s in op.sample_inputs(DEVICE, dtype, requires_grad=requires_grad):
            out.append(s)
            if len(out) == limit:
                break
    except Exception as e:  # noqa: BLE001
        totals.SKIP_REASONS[f"sample generation fails on npusim ({type(e).__name__}: {str(e)[:80]})"] += 1
    return out


def check_op(op):
    failures, outcome = [], {"passed": 0, "skipped": 0}

    def attempt(op_fn, sample, with_grad, label):
        try:
            reason = compare_sample(op, op_fn, sample, with_grad)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{label}: {type(e).__name__}: {str(e)[:400]}")
            totals.SAMPLES["failed"] += 1
            return
        if reason is None:
            outcome["passed"] += 1
            totals.SAMPLES["passed"] += 1
        else:
            outcome["skipped"] += 1
            totals.SAMPLES["skipped"] += 1
            totals.SKIP_REASONS[reason] += 1

    grad = op.supports_autograd
    for i, s in enumerate(samples(op, torch.float32, grad, SAMPLES_PER_OP)):
        attempt(op.op, s, grad, f"float32 sample {i}")
    if op.inplace_variant is not None:
        for i, s in enumerate(samples(op, torch.float32, False, 2)):
            def inplace(x, *args, **kwargs):
                x = x.clone()
                op.inplace_variant(x, *args, **kwargs)
                return x
            attempt(inplace, s, False, f"in-place sample {i}")
    cpu_dtypes = op.supported_dtypes("cpu")
    for dtype in EXTRA_DTYPES:
        if dtype in cpu_dtypes:
            for i, s in enumerate(samples(op, dtype, False, EXTRA_SAMPLES)):
                attempt(op.op, s, False, f"{dtype} sample {i}")
    return failures, outcome


def op_id(op):
    return f"{op.name}.{op.variant_test_name}" if op.variant_test_name else op.name


@pytest.mark.parametrize("op", op_db, ids=op_id)
def test_op_matches_cpu(op):
    name = op_id(op)
    start = time.perf_counter()
    failures, outcome = check_op(op)
    totals.SECONDS[0] += time.perf_counter() - start
    totals.PER_OP[outcome["passed"] + outcome["skipped"] + len(failures)] += 1
    if name in EXPECTED_FAILURES:
        assert failures, f"{name} now passes on npusim: remove it from EXPECTED_FAILURES"
        totals.OPS["expected failure"] += 1
        return
    totals.OPS["failed" if failures else "passed" if outcome["passed"] else "all samples skipped"] += 1
    assert not failures, f"{name}:\n" + "\n".join(failures)
