"""Beyond the main matrix: empty, 0-dim and multi-dim tensors, every root, every reduce op
for reduce and reduce_scatter, messages larger than a shared-memory stream, zero splits,
many async ops in flight, overlapping subgroups; the whole matrix again on CPU tensors;
Work/future consistency, tag matching, and device mixtures rejected."""
import os

import pytest

from launcher import assert_clean, describe, launch

HERE = os.path.dirname(os.path.abspath(__file__))


def failing_cases(outcomes):
    failures = {}
    for o in outcomes:
        for name, status in o.result("outcomes").items():
            if status != "ok":
                failures.setdefault(name, f"rank {o.rank}: {status}")
    return failures


@pytest.mark.parametrize("world,transport,ring", [(2, "shm", None), (2, "tcp", None), (3, "shm", None),
                                                 (3, "tcp", None), (4, "shm", None), (3, "shm", 4096)])
def test_edge_cases(world, transport, ring):
    """ring: a tiny shared-memory ring, so every message wraps around it many times."""
    code = open(os.path.join(HERE, "edge_rank.py")).read()
    env = {"NPUSIM_TRANSPORT": transport}
    if ring:
        env["NPUSIM_SHM_RING_BYTES"] = str(ring)
    outcomes = launch(code, world, env=env, timeout=240)
    assert_clean(outcomes)
    failures = failing_cases(outcomes)
    total = len(outcomes[0].result("outcomes"))
    print(f"\n{world} ranks over {transport}: {total} cases per rank, {len(failures)} failing")
    assert total >= 35, describe(outcomes)
    assert not failures, "\n".join(f"{k}\n{v}" for k, v in sorted(failures.items()))


def test_collective_matrix_on_cpu_tensors():
    """The main matrix with CPU tensors: the npusim backend serves both devices."""
    code = open(os.path.join(HERE, "matrix_rank.py")).read()
    outcomes = launch(code, 3, env={"MATRIX_DEVICE": "cpu"}, timeout=420)
    assert_clean(outcomes)
    failures = failing_cases(outcomes)
    print(f"\n3 ranks, cpu tensors: {len(outcomes[0].result('outcomes'))} cases per rank, {len(failures)} failing")
    assert not failures, "\n".join(f"{k}\n{v}" for k, v in sorted(failures.items()))


FUTURE_VS_WORK = """
import torch_npu_sim  # noqa: F401
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
dev = torch.device("npusim", RANK)
not_completed = {"all_reduce": 0, "all_gather_into_tensor": 0, "reduce_scatter_tensor": 0}
for i in range(50):
    t = torch.ones(4, device=dev)
    w = dist.all_reduce(t, async_op=True)
    w.get_future().wait()
    not_completed["all_reduce"] += not w.is_completed()
    o = torch.zeros(4 * WORLD, device=dev)
    w = dist.all_gather_into_tensor(o, t, async_op=True)
    w.get_future().wait()
    not_completed["all_gather_into_tensor"] += not w.is_completed()
    o = torch.zeros(4, device=dev)
    w = dist.reduce_scatter_tensor(o, torch.ones(4 * WORLD, device=dev), async_op=True)
    w.get_future().wait()
    not_completed["reduce_scatter_tensor"] += not w.is_completed()
report(not_completed=not_completed)
dist.destroy_process_group()
"""


def test_work_is_completed_once_its_future_is():
    """A future that holds the result means the Work is done: Work.is_completed() must
    not lag behind get_future().wait()."""
    outcomes = launch(FUTURE_VS_WORK, 2, timeout=120)
    assert_clean(outcomes)
    for o in outcomes:
        counts = o.result("not_completed")
        assert not any(counts.values()), (
            f"rank {o.rank}: is_completed() was False after get_future().wait() returned "
            f"(out of 50 calls each): {counts}")


TAGS = """
import torch_npu_sim  # noqa: F401
dist.init_process_group("npusim", timeout=timedelta(seconds=20))
dev = torch.device("npusim", RANK)
try:
    if RANK == 0:
        dist.send(torch.full((5,), 1.0, device=dev), 1, tag=1)
        dist.send(torch.full((5,), 2.0, device=dev), 1, tag=2)
        report(got="sent")
    else:
        a, b = torch.zeros(5, device=dev), torch.zeros(5, device=dev)
        rb = dist.irecv(b, 0, tag=2)  # posted first, matched second
        ra = dist.irecv(a, 0, tag=1)
        ra.wait()
        rb.wait()
        report(got=[a.tolist(), b.tolist()])
except Exception as e:
    report(got=f"{type(e).__name__}: {e}")
dist.destroy_process_group()
"""


def test_recv_matches_sends_by_tag():
    """torch.distributed: `tag` matches a recv with the remote send, so receives posted in
    another order than the sends still get the right messages."""
    outcomes = launch(TAGS, 2, timeout=60)
    assert_clean(outcomes)
    assert outcomes[1].result("got") == [[1.0] * 5, [2.0] * 5], describe(outcomes)
    assert outcomes[0].result("got") == "sent", describe(outcomes)


MIXTURE = """
import torch_npu_sim  # noqa: F401
dist.init_process_group("npusim", timeout=timedelta(seconds=20))
dev = torch.device("npusim", RANK)
errors = {}
def expect(name, fn):
    try:
        fn()
        errors[name] = "no error"
    except Exception as e:
        errors[name] = f"{type(e).__name__}: {e}"
expect("all_gather: cpu outputs, npusim input",
       lambda: dist.all_gather([torch.zeros(3) for _ in range(WORLD)], torch.ones(3, device=dev)))
expect("all_gather_into_tensor: cpu output, npusim input",
       lambda: dist.all_gather_into_tensor(torch.zeros(3 * WORLD), torch.ones(3, device=dev)))
expect("reduce_scatter_tensor: npusim output, cpu input",
       lambda: dist.reduce_scatter_tensor(torch.zeros(2, device=dev), torch.ones(2 * WORLD)))
expect("all_to_all_single: cpu output, npusim input",
       lambda: dist.all_to_all_single(torch.zeros(WORLD), torch.ones(WORLD, device=dev)))
# (scatter with CPU inputs on the root only is an error on the root alone: the other ranks'
# scatter then meets the root's next call, which is reported as a mismatch, not checked here)
t = torch.ones(3, device=dev)
dist.all_reduce(t)
report(errors=errors, after=t.tolist())
dist.destroy_process_group()
"""


def test_device_mixture_in_one_collective_is_a_clear_error():
    """CPU and npusim tensors are each fine, but one collective mixing them is bad use: a
    clear error naming the devices, raised before anything is sent (the group stays usable)."""
    outcomes = launch(MIXTURE, 2, timeout=60)
    assert_clean(outcomes)
    for o in outcomes:
        errors = o.result("errors")
        unclear = {k: v for k, v in errors.items() if v == "no error" or "device" not in v}
        assert not unclear, f"rank {o.rank}: accepted or unclear: {unclear}"
        assert o.result("after") == [2.0] * 3
