"""A peer that exits normally in the middle of the group's work (an uncaught exception,
sys.exit, destroy_process_group) makes every survivor's pending collective fail within
a second, naming it, on both transports; never the whole group timeout."""
import pytest

from launcher import describe, launch

EXIT_MID_COLLECTIVE = """
import torch_npu_sim  # noqa: F401
how = os.environ["EXIT_HOW"]
dist.init_process_group("npusim", timeout=timedelta(seconds=60))
dev = torch.device("npusim", RANK)
t = torch.ones(1 << 16, device=dev)
dist.all_reduce(t)  # the group works
if RANK == 1:
    time.sleep(0.5)  # the survivors are inside the next all_reduce by now
    report(exit_at=time.time())
    if how == "exception":
        raise RuntimeError("the training script failed on rank 1")
    if how == "sys.exit":
        sys.exit(3)
    dist.destroy_process_group()
    time.sleep(3)  # alive but gone from the group
    sys.exit(0)
try:
    dist.all_reduce(t)
    report(error=None)
except Exception as e:
    report(error=type(e).__name__, message=str(e), error_at=time.time())
"""


@pytest.mark.parametrize("transport", ["shm", "tcp"])
@pytest.mark.parametrize("how", ["exception", "sys.exit", "destroy_process_group"])
def test_survivors_fail_fast_when_a_peer_exits(transport, how):
    outcomes = launch(EXIT_MID_COLLECTIVE, 3, env={"EXIT_HOW": how, "NPUSIM_TRANSPORT": transport}, timeout=60)
    exit_at = outcomes[1].result("exit_at")
    for s in (outcomes[0], outcomes[2]):
        assert not s.killed and s.returncode == 0, describe(outcomes)
        assert s.result("error") == "DistBackendError", describe(outcomes)
        message = s.result("message")
        assert "rank 1 left the group" in message or "rank 1 is gone" in message, message
        latency = s.result("error_at") - exit_at
        print(f"\n{how}/{transport} rank {s.rank}: {latency * 1000:.0f} ms after rank 1 exited: {message[:120]}")
        assert latency < 1.0, f"{latency:.2f} s: {message}"
