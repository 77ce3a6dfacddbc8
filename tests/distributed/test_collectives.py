"""Every collective x reduce op x dtype, on real processes, checked against results each
rank computes locally; 2, 3 and 4 ranks (odd world sizes and element counts), both
transports."""
import os

import pytest

from launcher import assert_clean, describe, launch

HERE = os.path.dirname(os.path.abspath(__file__))


def run_matrix(world, transport):
    code = open(os.path.join(HERE, "matrix_rank.py")).read()
    outcomes = launch(code, world, env={"NPUSIM_TRANSPORT": transport}, timeout=420)
    assert_clean(outcomes)
    return outcomes


@pytest.mark.parametrize("transport", ["shm", "tcp"])
@pytest.mark.parametrize("world", [2, 3, 4])
def test_collective_matrix(world, transport):
    outcomes = run_matrix(world, transport)
    failures = {}
    total = 0
    for o in outcomes:
        assert o.result("transport") == transport
        cases = o.result("outcomes")
        total = len(cases)
        for name, status in cases.items():
            if status != "ok":
                failures.setdefault(name, f"rank {o.rank}: {status}")
    print(f"\n{world} ranks over {transport}: {total} cases per rank, {len(failures)} failing")
    assert total > 300, describe(outcomes)
    assert not failures, "\n".join(f"{k}\n{v}" for k, v in sorted(failures.items()))
