"""Per-pair transports: in one group, ranks on one host talk through shared memory and
ranks on different hosts through TCP. Hosts are named with NPUSIM_HOST_ID here (one
machine); tests/distributed/test_netns_hosts.py runs real network namespaces."""
import os

import pytest

from launcher import assert_clean, describe, launch

HERE = os.path.dirname(os.path.abspath(__file__))

# Each rank takes its host name from HOSTS (one letter per rank) before joining.
HOST_PRELUDE = '''
os.environ["NPUSIM_HOST_ID"] = "host-" + os.environ["HOSTS"][RANK]
'''

PEERS = '''
report(peers=list(torch_npu_sim.distributed.backend_of().peer_transports))
'''


def expected_peers(hosts, rank):
    return ["self" if p == rank else "shm" if hosts[p] == hosts[rank] else "tcp" for p in range(len(hosts))]


@pytest.mark.parametrize("hosts", ["aabb", "abab", "aab"])
def test_collective_matrix_over_mixed_transports(hosts):
    """Every collective x op x dtype of the matrix, with hosts grouped (aabb), interleaved
    (abab: shared-memory peers are not neighbours in rank order) and uneven (aab: rank 2
    reaches everyone over TCP)."""
    matrix = open(os.path.join(HERE, "matrix_rank.py")).read()
    body, last = matrix.rsplit("dist.destroy_process_group()", 1)
    code = HOST_PRELUDE + body + "import torch_npu_sim.distributed\n" + PEERS + "dist.destroy_process_group()" + last
    outcomes = launch(code, len(hosts), env={"HOSTS": hosts, "NPUSIM_SOCKET_ADDR": "127.0.0.1",
                                             "MATRIX_SIZES": "7,1031"}, timeout=420)
    assert_clean(outcomes)
    failures = {}
    for o in outcomes:
        peers = o.result("peers")
        assert peers == expected_peers(hosts, o.rank), describe(outcomes)
        kinds = set(peers) - {"self"}
        assert o.result("transport") == (kinds.pop() if len(kinds) == 1 else "mixed")
        cases = o.result("outcomes")
        assert len(cases) > 300, describe(outcomes)
        for name, status in cases.items():
            if status != "ok":
                failures.setdefault(name, f"rank {o.rank}: {status}")
    assert not failures, "\n".join(f"{k}\n{v}" for k, v in sorted(failures.items()))


SIMPLE = HOST_PRELUDE + '''
import torch_npu_sim.distributed


def keep_store_for_others():  # rank 0 hosts the store: it stays until every rank is done
    d = os.environ["DIST_TEST_DIR"]
    open(os.path.join(d, f"done.{RANK}"), "w").close()
    end = time.monotonic() + 30
    while RANK == 0 and time.monotonic() < end and sum(f.startswith("done.") for f in os.listdir(d)) < WORLD:
        time.sleep(0.01)


try:
    store = dist.TCPStore("127.0.0.1", int(os.environ["MASTER_PORT"]), None, RANK == 0, wait_for_workers=False)
    dist.init_process_group("npusim", store=store, rank=RANK, world_size=WORLD, timeout=timedelta(seconds=30))
    t = torch.full((1 << 20,), float(RANK + 1), device=torch.device("npusim", RANK))
    dist.all_reduce(t)
    report(sum=t[:2].tolist(), peers=list(torch_npu_sim.distributed.backend_of().peer_transports),
           transport=torch_npu_sim.distributed.backend_of().transport)
    dist.destroy_process_group()
except Exception as e:
    report(error=f"{type(e).__name__}: {e}")
keep_store_for_others()
'''


def test_rank_zero_asking_for_tcp_gets_tcp_everywhere():
    outcomes = launch(SIMPLE, 4, env={"HOSTS": "aabb", "NPUSIM_SOCKET_ADDR": "127.0.0.1",
                                      "NPUSIM_TRANSPORT": "tcp"}, timeout=120)
    assert_clean(outcomes)
    for o in outcomes:
        assert o.result("sum") == [10.0, 10.0], describe(outcomes)
        assert o.result("peers") == ["self" if p == o.rank else "tcp" for p in range(4)]
        assert o.result("transport") == "tcp"


def test_shm_everywhere_across_hosts_is_refused_by_name():
    outcomes = launch(SIMPLE, 4, env={"HOSTS": "aabb", "NPUSIM_SOCKET_ADDR": "127.0.0.1",
                                      "NPUSIM_TRANSPORT": "shm"}, timeout=120)
    assert_clean(outcomes)
    for o in outcomes:
        err = o.result("error")
        assert "NPUSIM_TRANSPORT=shm" in err and "rank 2 is on another" in err, describe(outcomes)


def test_bad_host_id_is_named():
    outcomes = launch(SIMPLE, 2, env={"HOSTS": "a;", "NPUSIM_SOCKET_ADDR": "127.0.0.1"}, timeout=120)
    assert_clean(outcomes)
    for o in outcomes:  # rank 1 names its setting; rank 0 learns it from rank 1's record
        assert "NPUSIM_HOST_ID must be" in o.result("error") and "'host-;'" in o.result("error"), describe(outcomes)
    assert "rank 1 could not join" in outcomes[0].result("error"), describe(outcomes)
