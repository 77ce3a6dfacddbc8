"""dist.recv without src: the first message with the tag, from whichever rank, and the
sender's rank returned (as gloo); bounded by the group timeout when nobody sends."""
from launcher import assert_clean, describe, launch

ANY_SOURCE = """
import torch_npu_sim  # noqa: F401
dist.init_process_group("npusim", timeout=timedelta(seconds=20))
dev = torch.device("npusim", RANK)
if RANK == 0:
    got = []
    for _ in range(WORLD - 1):
        t = torch.zeros(3, device=dev)
        src = dist.recv(t)
        got.append([src, t.cpu().tolist()])
    tagged = torch.zeros(2, device=dev)
    work = dist.irecv(tagged, tag=7)
    work.wait()
    report(got=sorted(got), tagged=tagged.cpu().tolist())
else:
    dist.send(torch.full((3,), float(RANK), device=dev), 0)
    if RANK == 1:
        dist.send(torch.full((2,), 7.0, device=dev), 0, tag=7)
dist.barrier()
dist.destroy_process_group()
"""

NOBODY_SENDS = """
import torch_npu_sim  # noqa: F401
dist.init_process_group("npusim", timeout=timedelta(seconds=2))
if RANK == 0:
    try:
        dist.recv(torch.zeros(1, device="npusim"))
        report(error=None)
    except Exception as e:
        report(error=type(e).__name__, message=str(e))
else:
    time.sleep(4)
"""


def test_recv_from_any_source_returns_the_sender():
    outcomes = launch(ANY_SOURCE, 3, timeout=90)
    assert_clean(outcomes)
    assert outcomes[0].result("got") == [[1, [1.0] * 3], [2, [2.0] * 3]], describe(outcomes)
    assert outcomes[0].result("tagged") == [7.0, 7.0]


def test_recv_from_any_source_times_out_naming_the_ranks():
    outcomes = launch(NOBODY_SENDS, 2, timeout=60)
    r0 = outcomes[0]
    assert r0.result("error") == "DistBackendError", describe(outcomes)
    assert "Timed out" in r0.result("message") and "rank 1" in r0.result("message"), r0.result("message")
