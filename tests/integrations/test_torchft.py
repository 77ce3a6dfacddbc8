"""torchft on npusim (the `torchft` extra): npusim as a torchft process group, and torchft's
Manager and Lighthouse running replica groups on npusim devices through a failure.

* the process group's life cycle on two real processes: configure, collectives on npusim
  and CPU tensors, reconfigure, a SIGKILLed peer failing the pending collective with an
  error naming it (never a hang) that ``wait()`` raises (torchft's Manager alone gets it
  through the future) and ``errored()`` reports, and reconfiguring the survivor alone;
* DDP, 3 replica groups: one is SIGKILLed mid-run, the others keep committing steps, the
  killed group restarts, heals from a peer and commits again; at the end every replica
  holds the same weights and the loss curve stays near the undisturbed run's (computed in
  this process with the same data and averaging);
* HSDP (FSDP2 inside each of 2 groups of 2 ranks, torchft across them) through the same
  failure, with NPUSIM_SLOW_TESTS=1 (about a minute more on 2 cores).

Every run is under a wall-clock limit and kills all its children (lighthouse included).
"""
import os
import sys

import pytest

pytest.importorskip("torchft", reason="torchft is not installed (the `torchft` extra: bash scripts/install_torchft.sh)")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "distributed"))
from launcher import assert_clean, describe, launch  # noqa: E402

from torch_npu_sim.integrations.torchft import ProcessGroupNpuSim  # noqa: E402
from torch_npu_sim.integrations.torchft import replica_harness, replica_worker  # noqa: E402

pytestmark = pytest.mark.timeout(600)

LIFE_CYCLE = """
from torch_npu_sim.integrations.torchft import ProcessGroupNpuSim
port = int(os.environ["MASTER_PORT"])
if RANK == 0:
    server = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False)
pg = ProcessGroupNpuSim(timeout=timedelta(seconds=30))
report(before=pg.errored() is None and pg.backend is None)
pg.configure(f"127.0.0.1:{port}/quorum/1", "replica", RANK, WORLD)
t = torch.full((4,), float(RANK + 1), device="npusim")
pg.allreduce([t], dist.ReduceOp.SUM).wait()
report(npusim_sum=t.cpu().tolist(), device=str(t.device), name=pg.getBackendName(), size=pg.size())
pg.configure(f"127.0.0.1:{port}/quorum/2", "replica", RANK, WORLD)
c = torch.full((3,), float(RANK + 1))
pg.allreduce([c], dist.ReduceOp.SUM).wait()
b = torch.arange(3.0, device="npusim") * (RANK + 1)
pg.broadcast_one(b, 0).wait()
report(cpu_sum=c.tolist(), broadcast=b.cpu().tolist(), healthy=pg.errored() is None)
if RANK == 1:
    os.kill(os.getpid(), signal.SIGKILL)
import logging
from torchft.manager import Manager, _ManagedWork
class ManagerStub:  # what torchft's _ManagedWork uses of its Manager; errors are reported as the Manager does
    _timeout, _logger = timedelta(seconds=30), logging.getLogger("manager-stub")
    wrap_future = Manager.wrap_future
    def __init__(self):
        self.errors = []
    def report_error(self, e):
        self.errors.append(f"{type(e).__name__}: {e}")
def managed(tensor):  # an allreduce as Manager.allreduce issues and wraps it
    manager = ManagerStub()
    work = _ManagedWork(manager, pg.allreduce([tensor], dist.ReduceOp.SUM), tensor)
    work.get_future().then(lambda fut: tensor)
    return manager, work
def outcome(call):
    try:
        return f"returned {call()}"
    except Exception as e:
        return f"raised {type(e).__name__}: {e}"
# the peer never joins these: they fail when the peer dies (never hang). wait() raises the
# failure, the future carries it, errored() reports it; torchft's Manager alone gets False from
# wait() and the error through the future
work = pg.allreduce([torch.ones(4, device="npusim")], dist.ReduceOp.SUM)
m_tensor = torch.ones(4, device="npusim")
manager, m_work = managed(m_tensor)
report(wait=outcome(work.wait), future=outcome(work.get_future().wait))
report(errored=f"{type(pg.errored()).__name__}: {pg.errored()}")
report(managed_wait=outcome(m_work.wait), managed_errors=manager.errors,
       managed_value=m_work.get_future()._fut.wait().cpu().tolist())
# later allreduces of the failed configuration are not run: raised at once, tensors untouched
skipped = torch.full((2,), 7.0, device="npusim")
report(skipped_wait=outcome(pg.allreduce([skipped], dist.ReduceOp.SUM).wait), skipped=skipped.cpu().tolist())
manager, m_work = managed(torch.full((2,), 7.0, device="npusim"))
report(managed_skipped_wait=outcome(m_work.wait), managed_skipped_errors=manager.errors)
pg.configure(f"127.0.0.1:{port}/quorum/3", "replica", 0, 1)
s = torch.ones(2, device="npusim")
pg.allreduce([s], dist.ReduceOp.SUM).wait()
report(alone=s.cpu().tolist(), healthy_again=pg.errored() is None)
pg.shutdown()
report(after_shutdown=pg.backend is None)
"""


def test_process_group_life_cycle_and_dead_peer():
    outcomes = launch(LIFE_CYCLE, world=2, timeout=120, linger=30)
    survivor, victim = outcomes
    assert survivor.returncode == 0 and not survivor.killed, describe(outcomes)
    assert victim.returncode == -9, describe(outcomes)
    for o in outcomes:
        assert o.result("before") is True
        assert o.result("npusim_sum") == [3.0] * 4
        assert o.result("device").startswith("npusim")
        assert o.result("name") == "torchft-npusim" and o.result("size") == 2
        assert o.result("cpu_sum") == [3.0] * 3
        assert o.result("broadcast") == [0.0, 1.0, 2.0]
        assert o.result("healthy") is True
    # a caller other than torchft's Manager cannot take the failed allreduce for a result
    for key in ("wait", "future"):
        said = survivor.result(key)
        assert said.startswith("raised DistBackendError") and "rank 1" in said, (key, said)
    errored = survivor.result("errored")
    assert errored.startswith("DistBackendError") and "rank 1" in errored, errored
    # the Manager's wrapper: wait() goes through, the error reaches the Manager, the tensor stays local
    assert survivor.result("managed_wait") == "returned True"
    assert any("DistBackendError" in e and "rank 1" in e for e in survivor.result("managed_errors"))
    assert survivor.result("managed_value") == [1.0] * 4
    # later allreduces of the failed configuration fail at once, their tensors untouched
    said = survivor.result("skipped_wait")
    assert said.startswith("raised DistBackendError") and "not run" in said and "rank 1" in said, said
    assert survivor.result("skipped") == [7.0, 7.0]
    assert survivor.result("managed_skipped_wait") == "returned True"
    assert any("not run" in e for e in survivor.result("managed_skipped_errors"))
    assert survivor.result("alone") == [1.0, 1.0] and survivor.result("healthy_again") is True
    assert survivor.result("after_shutdown") is True


def test_bad_arguments_are_named():
    from datetime import timedelta

    with pytest.raises(ValueError, match="timeout must be a positive timedelta"):
        ProcessGroupNpuSim(timeout=timedelta(seconds=0))
    with pytest.raises(ValueError, match="timeout must be a positive timedelta"):
        ProcessGroupNpuSim(timeout=30)
    with pytest.raises(ValueError, match="mode must be 'ddp' or 'hsdp'"):
        replica_harness.run(mode="fsdp")
    with pytest.raises(ValueError, match="kill_replica 5 is not one of the 3"):
        replica_harness.run(groups=3, kill_replica=5)


def test_torchft_internals_used_are_listed_and_present():
    """torchft internals the integration relies on (_private_torch.TORCHFT_PRIVATE_USES) exist on
    the installed torchft; instance attributes are looked up on a fresh process group."""
    import importlib
    import inspect

    from torch_npu_sim import _private_torch

    assert _private_torch.TORCHFT_PRIVATE_USES
    pg = ProcessGroupNpuSim()
    for name, used_in, _ in _private_torch.TORCHFT_PRIVATE_USES:
        module, _, attrs = name.partition(":")
        cls_name, attr = attrs.split(".")
        cls = getattr(importlib.import_module(module), cls_name)
        # a class attribute, or an instance attribute set by the class's __init__
        present = hasattr(cls, attr) or (isinstance(pg, cls) and hasattr(pg, attr)) or \
            f"self.{attr} =" in inspect.getsource(cls.__init__) or f"self.{attr}:" in inspect.getsource(cls.__init__)
        assert present, f"torchft changed {name} (used in {used_in})"
        assert os.path.exists(os.path.join(os.path.dirname(__file__), "..", "..", used_in)), used_in


class _ErroredManager:
    """A torchft Manager already errored in this step: allreduce skips, as Manager.allreduce does."""

    def __init__(self):
        self.calls = 0

    def allreduce(self, tensor):
        from torchft.work import _DummyWork

        self.calls += 1
        return _DummyWork(tensor)


def test_ddp_hook_survives_a_skipped_allreduce():
    """torchft 0.2.0's own hook raises AttributeError here (a plain future has no `_fut`);
    ours hands DDP the completed future, and the local gradients stay."""
    import torch

    from torch_npu_sim.integrations.torchft import DistributedDataParallel

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64)).to("npusim")
    reference = [p.detach().clone() for p in model.parameters()]
    manager = _ErroredManager()
    ddp = DistributedDataParallel(manager, model, bucket_cap_mb=0.001)  # a bucket per parameter
    x = torch.randn(2, 64, device="npusim")
    ddp(x).sum().backward()
    assert manager.calls >= 2, "expected several gradient buckets"
    local = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64)).to("npusim")
    with torch.no_grad():
        for p, r in zip(local.parameters(), reference):
            p.copy_(r)
    local(x).sum().backward()
    for p, q in zip(model.parameters(), local.parameters()):
        torch.testing.assert_close(p.grad.cpu(), q.grad.cpu())


def check_recovery(run: replica_harness.Run, groups: int, group_size: int, killed: int, mode: str) -> None:
    logs = {k: v[-10:] for k, v in run.logs.items()}
    # survivors kept committing after the kill, the restarted group healed and committed again
    rec = run.recovery(killed)
    assert rec["survivors_commit_s"] is not None, logs
    assert rec["training_again_s"] is not None, logs
    back = run.of("step", killed, incarnation=1)
    assert back[0]["step"] > 0, "the restarted group did not heal from a peer (it started at step 0)"
    assert any(e["committed"] and e["participants"] == groups for e in back), "never rejoined the full quorum"
    survivors_after = [e for e in run.of("step") if e["replica"] != killed and e["t"] > run.kill_time
                       and e["committed"]]
    assert any(e["participants"] == groups - 1 for e in survivors_after), "no step was committed without it"
    # every replica ends at the stop step with the same weights (per shard for HSDP)
    assert {e["step"] for e in run.of("done")} == {run.stop_step}
    final = run.final_params()
    assert set(final) == {(r, g) for r in range(groups) for g in range(group_size)}
    for g in range(group_size):
        weights = [final[(r, g)] for r in range(groups)]
        assert all(w == weights[0] for w in weights), f"replicas' weights differ (group rank {g})"
    # the loss curve: exact (up to summation order) before the kill, near the undisturbed run after
    curve = run.loss_curve(0)
    assert sorted(curve) == list(range(run.stop_step)), "replica 0 missed committed steps"
    reference = replica_worker.reference_curve(groups, run.stop_step, mode=mode, group_size=group_size)
    full = {e["step"] for e in run.of("step", 0, 0) if e["committed"] and e["participants"] == groups}
    for step in range(run.kill_step + 1):
        if all(s in full for s in range(step + 1)):  # every group in every step so far (the usual case)
            assert curve[step] == pytest.approx(reference[step], rel=1e-4), f"step {step} before the kill"
    for step, loss in curve.items():
        assert loss == pytest.approx(reference[step], rel=0.3, abs=0.01), f"step {step}: {loss} vs {reference[step]}"
    # training progressed, at least half as far as the undisturbed run in as many steps (how many
    # steps run depends on the machine's speed, so no fixed target)
    last = run.stop_step - 1
    assert reference[last] < reference[0]
    assert curve[0] - curve[last] > 0.5 * (reference[0] - reference[last]), "training did not progress"


def test_ddp_replica_groups_survive_a_killed_group():
    run = replica_harness.run(mode="ddp", groups=3, group_size=1, min_replicas=2, kill_replica=1, kill_at_step=3,
                              steps_after_rejoin=3, step_sleep=0.1, timeout_s=5, deadline_s=240)
    check_recovery(run, groups=3, group_size=1, killed=1, mode="ddp")


def test_hsdp_replica_groups_survive_a_killed_group():
    run = replica_harness.run(mode="hsdp", groups=2, group_size=2, min_replicas=1, kill_replica=1, kill_at_step=3,
                              steps_after_rejoin=3, step_sleep=0.2, timeout_s=5, deadline_s=300)
    check_recovery(run, groups=2, group_size=2, killed=1, mode="hsdp")
