"""Conformance to PyTorch's ModuleInfo database: every module of `module_db`, built on
the CPU and moved to npusim, must give the CPU's outputs and gradients (PyTorch's
tolerances, torch.testing.assert_close).

For each ModuleInfo and each mode it is tested in (training; eval as well where
`train_and_eval_differ`), the module's `module_inputs_func` makes the samples on the
CPU (float32, requires_grad=True). To keep the run short (~40 s on 2 cores) at most
SAMPLES_PER_MODE = 64 float32 samples per mode are checked, spread evenly over the
generated list: that is every sample of every module except LinearCrossEntropyLoss
(64 of its 857). In training mode, the first samples in the other dtypes a module lists
are checked too (OTHER_DTYPES: up to 8 float64, 4 bfloat16, 4 float16). For a sample:

- the module is built on the CPU under a fixed seed (a lazy module is materialised by a
  no-grad CPU forward first), deep-copied, and the copy moved with `.to("npusim")`, so
  both have the same weights. Tensors the module keeps outside its parameters and
  buffers (`.to` leaves them where they are; FractionalMaxPool's `_random_samples`)
  are moved too, as constructing the module on the device would;
- the forward inputs are copied to fresh leaves on each side and both modules run;
  outputs (values, dtypes, devices) and the buffers afterwards (BatchNorm's running
  statistics) are compared;
- the same random grad outputs are back-propagated on both sides, and the gradients of
  the inputs and of the parameters (looked up by name: `.to` may make new Parameter
  objects) are compared;
- then both modules are put in eval mode and the forward is compared once more under
  `torch.no_grad()`, where MultiheadAttention and the Transformer layers take their
  fused fast paths (nested tensors for padding masks).

Skipped, with the reason counted: samples that fail on the CPU itself, and samples that
draw random numbers (the CPU generator's state moves during the CPU forward: npusim's
generator is not the CPU's; an op merely tagged nondeterministic_seeded, like attention
with dropout_p=0, does not count). A sample that is random in training mode (dropout)
is compared in eval mode instead, unless the module has eval-mode samples of its own.
Totals are printed at the end (tests/ops/conftest.py); a module whose samples were all
skipped is counted apart and does not fail.
"""
import copy
import time

import pytest
import torch
from torch.testing._internal.common_modules import module_db
from torch.utils import _pytree as pytree

import moduleinfo_totals as totals

DEVICE = "npusim"
SAMPLES_PER_MODE = 64  # float32 samples per mode: all of them but LinearCrossEntropyLoss's 857
# Samples in the other dtypes a module lists (training mode), where it lists them.
OTHER_DTYPES = {torch.float64: 8, torch.bfloat16: 4, torch.float16: 4}
SEED = 0

# Known differences, each with its reason. Checked strictly: a module listed here that
# passes fails the run, so the list cannot go stale.
EXPECTED_FAILURES: dict = {
    "nn.Transformer": "nested tensors: in eval mode under no_grad with a src_key_padding_mask the encoder's fast "
                      "path calls _nested_tensor_from_mask, whose NestedTensor output the fallback cannot adopt "
                      "(NestedTensorImpl doesn't support strides); nothing handles the NestedTensorPrivateUse1 key",
}


class SkipSample(Exception):
    """The sample cannot be compared; the message is the reason."""


def tensors_in(x):
    return [t for t in pytree.tree_leaves(x) if isinstance(t, torch.Tensor)]


def fresh_inputs(forward_input, device):
    """Copies of the forward args/kwargs on `device`; tensors that require grad become
    new leaves (same values, same strides)."""
    def copy_one(x):
        if not isinstance(x, torch.Tensor):
            return x
        y = x.detach().to(device, copy=True)
        return y.requires_grad_(x.requires_grad)
    return pytree.tree_map(copy_one, (forward_input.args, forward_input.kwargs))


def build_cpu_module(module_info, module_input, dtype, training):
    torch.manual_seed(SEED)
    c = module_input.constructor_input
    m = module_info.module_cls(*c.args, **c.kwargs)
    m.to(dtype)
    if module_info.is_lazy:  # materialise the parameters on the CPU, so both copies share them
        args, kwargs = fresh_inputs(module_input.forward_input, "cpu")
        with torch.no_grad():
            m(*args, **kwargs)
    m.train(training)
    return m


def move_plain_tensors(module):
    """Tensors kept as plain attributes (not parameters or buffers) stay behind in `.to`;
    move them as building the module on the device would."""
    for sub in module.modules():
        for name, value in list(vars(sub).items()):
            if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter) \
                    and value.device.type == "cpu":
                setattr(sub, name, value.to(DEVICE))


def to_device_module(cpu_copy):
    """The deep copy of the CPU module, moved to npusim."""
    m = cpu_copy.to(DEVICE)
    move_plain_tensors(m)
    for name, t in list(m.named_parameters()) + list(m.named_buffers()):
        assert t.device.type == DEVICE, f"{name} stayed on {t.device} after .to({DEVICE!r})"
    return m


def cpu_forward(module, forward_input):
    """The CPU reference output, the inputs it was computed from, and whether it drew
    random numbers from the CPU generator (its state moved: dropout does, attention
    with dropout_p=0 does not). Raises SkipSample when the CPU rejects the sample."""
    args, kwargs = fresh_inputs(forward_input, "cpu")
    rng_state = torch.get_rng_state()
    try:
        out = module(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - nothing to compare against
        raise SkipSample(f"fails on CPU ({type(e).__name__})")
    return out, args, kwargs, not torch.equal(rng_state, torch.get_rng_state())


def to_cpu(x):
    return pytree.tree_map(lambda t: t.detach().cpu() if isinstance(t, torch.Tensor) else t, x)


def assert_same(actual, expected, what):
    a_tensors, e_tensors = tensors_in(actual), tensors_in(expected)
    assert len(a_tensors) == len(e_tensors), f"{what}: {len(a_tensors)} tensors, expected {len(e_tensors)}"
    for a, e in zip(a_tensors, e_tensors):
        want = DEVICE if e.device.type == "cpu" else e.device.type
        assert a.device.type == want, f"{what}: a tensor landed on {a.device}, expected {want}"
    torch.testing.assert_close(to_cpu(actual), to_cpu(expected), equal_nan=True, check_device=False,
                               msg=lambda m: f"{what} mismatch: {m}")


def grad_targets(out):
    return [t for t in tensors_in(out) if t.requires_grad and (t.is_floating_point() or t.is_complex())]


def compare_sample(module_info, module_input, dtype, training):
    """Returns None if the sample passed, or a skip reason; raises on a mismatch."""
    try:
        cpu_module = build_cpu_module(module_info, module_input, dtype, training)
        pristine = copy.deepcopy(cpu_module)  # the forward moves the state on (running statistics)
        expected, cpu_args, cpu_kwargs, random = cpu_forward(cpu_module, module_input.forward_input)
        if random and training and not module_info.train_and_eval_differ:
            # dropout in a module whose samples are the same in both modes: use eval mode
            cpu_module = build_cpu_module(module_info, module_input, dtype, False)
            pristine = copy.deepcopy(cpu_module)
            expected, cpu_args, cpu_kwargs, random = cpu_forward(cpu_module, module_input.forward_input)
            training = False
            if not random:
                totals.NOTES["random in training mode (dropout): compared in eval mode"] += 1
    except SkipSample as e:
        return str(e)
    except Exception as e:  # noqa: BLE001
        return f"module construction fails on CPU ({type(e).__name__})"
    if random:
        if training:
            return "random in training mode (dropout): covered by the eval-mode samples"
        return "random: draws from the generator (npusim's stream differs from the CPU's)"
    dev_module = to_device_module(pristine)
    dev_args, dev_kwargs = fresh_inputs(module_input.forward_input, DEVICE)
    actual = dev_module(*dev_args, **dev_kwargs)
    assert_same(actual, to_cpu(expected), "output")
    assert_same(dict(dev_module.named_buffers()), to_cpu(dict(cpu_module.named_buffers())), "buffers after forward")

    # Backward: the same grad outputs; gradients of the inputs and of the parameters (by name).
    outs_cpu, outs_dev = grad_targets(expected), grad_targets(actual)
    assert len(outs_cpu) == len(outs_dev), "outputs requiring grad differ"
    cpu_params, dev_params = dict(cpu_module.named_parameters()), dict(dev_module.named_parameters())
    assert cpu_params.keys() == dev_params.keys(), "parameter names differ after .to()"
    names = [n for n, p in cpu_params.items() if p.requires_grad]
    cpu_leaves = [t for t in tensors_in((cpu_args, cpu_kwargs)) if t.requires_grad] + [cpu_params[n] for n in names]
    dev_leaves = [t for t in tensors_in((dev_args, dev_kwargs)) if t.requires_grad] + [dev_params[n] for n in names]
    labels = [f"input {i}" for i in range(len(cpu_leaves) - len(names))] + [f"parameter {n!r}" for n in names]
    if outs_cpu and cpu_leaves:
        torch.manual_seed(SEED + 1)
        grad_outs = [torch.randn_like(o) for o in outs_cpu]
        try:
            grads_cpu = torch.autograd.grad(outs_cpu, cpu_leaves, grad_outs, allow_unused=True)
        except Exception as e:  # noqa: BLE001 - no CPU gradient to compare against
            return f"backward fails on CPU ({type(e).__name__})"
        grads_dev = torch.autograd.grad(outs_dev, dev_leaves, [g.to(DEVICE) for g in grad_outs], allow_unused=True)
        for label, g_dev, g_cpu in zip(labels, grads_dev, grads_cpu):
            assert (g_dev is None) == (g_cpu is None), f"gradient of {label}: npusim {g_dev is not None}, " \
                                                       f"CPU {g_cpu is not None}"
            if g_cpu is not None:
                assert_same(g_dev, g_cpu, f"gradient of {label}")

    return compare_inference(cpu_module, dev_module, module_input.forward_input)


def compare_inference(cpu_module, dev_module, forward_input):
    """The eval-mode forward under no_grad, where MultiheadAttention and the Transformer
    layers take their fused fast paths (nested tensors for padding masks). Where the CPU
    cannot give a reference, that is noted (the sample has passed the rest)."""
    cpu_module.eval()
    dev_module.eval()
    dev_args, dev_kwargs = fresh_inputs(forward_input, DEVICE)
    with torch.no_grad():
        try:
            expected, _, _, random = cpu_forward(cpu_module, forward_input)
        except SkipSample as e:
            totals.NOTES[f"no-grad eval forward not compared: {e}"] += 1
            return None
        if random:
            totals.NOTES["no-grad eval forward not compared: random (draws from the generator)"] += 1
            return None
        actual = dev_module(*dev_args, **dev_kwargs)
    assert_same(actual, to_cpu(expected), "no-grad eval output")
    return None


def spread(items, limit):
    """At most `limit` items, evenly spaced over the list (deterministic)."""
    if len(items) <= limit:
        return list(enumerate(items))
    step = len(items) / limit
    return [(int(i * step), items[int(i * step)]) for i in range(limit)]


def module_samples(module_info, dtype, training, limit):
    torch.manual_seed(SEED)
    try:
        inputs = module_info.module_inputs_func(module_info, device="cpu", dtype=dtype, requires_grad=True,
                                                training=training)
    except Exception as e:  # noqa: BLE001
        totals.SKIP_REASONS[f"sample generation fails on CPU ({type(e).__name__}: {str(e)[:80]})"] += 1
        return []
    return spread(inputs, limit)


def check_module(module_info):
    failures, outcome = [], {"passed": 0, "skipped": 0}

    def attempt(module_input, dtype, training, label):
        try:
            reason = compare_sample(module_info, module_input, dtype, training)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{label} ({module_input.desc or 'no desc'}): {type(e).__name__}: {str(e)[:600]}")
            totals.SAMPLES["failed"] += 1
            return
        if reason is None:
            outcome["passed"] += 1
            totals.SAMPLES["passed"] += 1
        else:
            outcome["skipped"] += 1
            totals.SAMPLES["skipped"] += 1
            totals.SKIP_REASONS[reason] += 1

    modes = (True, False) if module_info.train_and_eval_differ else (True,)
    for training in modes:
        mode = "train" if training else "eval"
        for i, s in module_samples(module_info, torch.float32, training, SAMPLES_PER_MODE):
            attempt(s, torch.float32, training, f"float32 {mode} sample {i}")
    for dtype, limit in OTHER_DTYPES.items():
        if dtype in module_info.supported_dtypes("cpu"):
            for i, s in module_samples(module_info, dtype, True, limit):
                attempt(s, dtype, True, f"{dtype} train sample {i}")
    return failures, outcome


@pytest.mark.parametrize("module_info", module_db, ids=lambda m: m.name)
def test_module_matches_cpu(module_info):
    name = module_info.name
    start = time.perf_counter()
    failures, outcome = check_module(module_info)
    totals.SECONDS[0] += time.perf_counter() - start
    totals.PER_MODULE[outcome["passed"] + outcome["skipped"] + len(failures)] += 1
    if name in EXPECTED_FAILURES:
        totals.MODULES["expected failure" if failures else "failed (listed as expected failure, passes)"] += 1
        assert failures, f"{name} now passes on npusim: remove it from EXPECTED_FAILURES"
        return
    totals.MODULES["failed" if failures else "passed" if outcome["passed"] else "all samples skipped"] += 1
    assert not failures, f"{name}:\n" + "\n".join(failures)
