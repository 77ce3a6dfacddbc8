"""torch_npu_sim.distributed.monitored_barrier: gloo's protocol and messages (3 ranks, so
that wait_all_ranks has two ranks to name). Each failing case runs on its own group."""
from launcher import assert_clean, describe, launch

CODE = """
import warnings
import torch_npu_sim.distributed as npd
dist.init_process_group("npusim")

def outcome(fn):
    try:
        fn()
        return "ok"
    except RuntimeError as e:
        return str(e)

short = timedelta(seconds=0.5)
groups = {k: dist.new_group(timeout=timedelta(seconds=3)) for k in ("first", "all", "zero", "others")}
sub = dist.new_group([0, 1])

# everyone arrives, with and without wait_all_ranks, twice (fresh tags each call)
for wait_all in (False, True, False):
    npd.monitored_barrier(timeout=timedelta(seconds=30), wait_all_ranks=wait_all)
report(all_arrive="ok")

if RANK == 0:
    report(first=outcome(lambda: npd.monitored_barrier(groups["first"], short)))
    # rank 1 never arrives; rank 2 does and hears of rank 0's failure at once (below)
    t0 = time.monotonic()
    report(all=outcome(lambda: npd.monitored_barrier(groups["all"], short, wait_all_ranks=True)),
           all_s=time.monotonic() - t0)
    report(zero=outcome(lambda: npd.monitored_barrier(groups["zero"], timedelta(0))))
    time.sleep(0.5)  # rank 0 fails "others" by not answering
elif RANK == 1:
    report(others=outcome(lambda: npd.monitored_barrier(groups["others"], short)))
else:
    t0 = time.monotonic()
    report(first=outcome(lambda: npd.monitored_barrier(groups["first"], short)), first_s=time.monotonic() - t0)

# a float timeout is taken as seconds; a rank outside the group returns at once
with warnings.catch_warnings(record=True):
    warnings.simplefilter("always")
    report(sub=outcome(lambda: npd.monitored_barrier(sub, 30.0)))
dist.barrier()  # no rank leaves (which fails its groups) before all cases are done
report(done=True)
"""


def test_monitored_barrier_semantics():
    outcomes = launch(CODE, 3, timeout=120)
    assert_clean(outcomes)
    r0, r1, r2 = outcomes
    for o in outcomes:
        assert o.result("all_arrive") == "ok", describe(outcomes)
        assert o.result("sub") == "ok", describe(outcomes)
    assert r0.result("first").startswith("[Rank 0]: Rank 1 failed to pass monitoredBarrier in 500 ms"), describe(outcomes)
    assert r2.result("first").startswith(
        "Rank 2 successfully reached monitoredBarrier, but received errors while waiting for send/recv from rank 0"
    ), describe(outcomes)
    assert r2.result("first_s") < 2.5, describe(outcomes)  # told by rank 0, not at the group's 3 s timeout
    assert r0.result("all").startswith("[Rank 0]: Ranks 1, 2 failed to pass monitoredBarrier in 500 ms"), describe(outcomes)
    assert 0.9 <= r0.result("all_s") < 3, describe(outcomes)  # the whole timeout for each rank, as gloo
    assert r0.result("zero").startswith("Rank 0 timed out in monitoredBarrier after 0 ms"), describe(outcomes)
    assert r1.result("others").startswith(
        "Rank 1 successfully reached monitoredBarrier, but received errors while waiting for send/recv from rank 0"
    ), describe(outcomes)
