"""Group creation against hostile peers, on real processes under hard time limits:
strangers on the listening port (silent, garbage, without the secret), an impostor
listener (both with and without the secret), a rank SIGKILLed between creating and
unlinking the shared memory; and the handshake's HMAC-SHA256 against known vectors.
Broken set-ups (bad settings, mismatches, deaths, small /dev/shm) are in
test_rendezvous_failures.py. Times are printed (pytest -s)."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

import npusim_handshake as hs
from npusim_handshake import listening, store_port, wait_for
from launcher import assert_clean, describe, launch

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(HERE, "..", "..", "csrc")


# ------------------------------------------------------------------ HMAC-SHA256

HMAC_DRIVER = r"""
#include "distributed/Hmac.h"
#include <cstdio>
#include <iostream>
#include <string>
using namespace torch_npu_sim::dist;
static std::string unhex(const std::string& h) {
  std::string s;
  for (size_t i = 0; i + 1 < h.size(); i += 2) s += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return s;
}
int main() {
  std::string k, m;
  while (std::cin >> k >> m) {
    k = k == "-" ? "" : unhex(k); m = m == "-" ? "" : unhex(m);
    Sha256 sha; sha.update(m.data(), m.size());
    for (auto b : hmac_sha256(k.data(), k.size(), m.data(), m.size())) std::printf("%02x", b);
    std::printf(" ");
    for (auto b : sha.finish()) std::printf("%02x", b);
    std::printf("\n");
  }
}
"""

RFC4231 = [  # (key, data, HMAC-SHA256) test cases 1, 2, 3, 4, 6, 7
    ("0b" * 20, b"Hi There".hex(), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe".hex(), b"what do ya want for nothing?".hex(),
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("aa" * 20, "dd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    ("0102030405060708090a0b0c0d0e0f10111213141516171819", "cd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    ("aa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First".hex(),
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    ("aa" * 131, b"This is a test using a larger than block-size key and a larger than block-size data. The key "
                 b"needs to be hashed before being used by the HMAC algorithm.".hex(),
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]


def test_hmac_sha256_matches_rfc4231_and_python():
    """The handshake's own SHA-256/HMAC (csrc/distributed/Hmac.cpp, compiled alone):
    RFC 4231 vectors, then Python's hashlib/hmac on every length around the block edges."""
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the standalone HMAC check")
    import hashlib
    import hmac
    cases = [(k, m) for k, m, _ in RFC4231]
    for n in list(range(0, 130)) + [1000, 4096]:
        cases.append((os.urandom(n % 150).hex() or "-", os.urandom(n).hex() or "-"))
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "driver.cpp")
        open(src, "w").write(HMAC_DRIVER)
        exe = os.path.join(d, "driver")
        subprocess.run([compiler, "-O1", "-std=c++17", "-I", CSRC, src, os.path.join(CSRC, "distributed", "Hmac.cpp"),
                        "-o", exe], check=True, timeout=120)
        out = subprocess.run([exe], input="\n".join(f"{k} {m}" for k, m in cases), capture_output=True, text=True,
                             check=True, timeout=30).stdout.split("\n")
    for i, (_, _, expected) in enumerate(RFC4231):
        assert out[i].split()[0] == expected, f"RFC 4231 case {i}"
    for (k, m), line in zip(cases, out):
        key, msg = bytes.fromhex(k if k != "-" else ""), bytes.fromhex(m if m != "-" else "")
        assert line.split() == [hmac.new(key, msg, hashlib.sha256).hexdigest(), hashlib.sha256(msg).hexdigest()]


# ------------------------------------------------------------------ strangers on the port

GATED = """
import torch_npu_sim  # noqa: F401
gate = os.path.join(os.environ["DIST_TEST_DIR"], "go")
if RANK != 0:
    while not os.path.exists(gate):
        time.sleep(0.005)
try:
    # rank 0's store does not wait for the others, so rank 0 is listening before they come
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), WORLD, RANK == 0,
                          wait_for_workers=False)
    dist.init_process_group("npusim", store=store, rank=RANK, world_size=WORLD, timeout=timedelta(seconds=20))
    report(done_at=time.time())
    t = torch.ones(4, device=torch.device("npusim", RANK))
    dist.all_reduce(t)
    report(sum=t.tolist())
    dist.destroy_process_group()
except Exception as e:
    report(error=str(e), error_type=type(e).__name__, done_at=time.time())
"""


PLAIN = """
import torch_npu_sim  # noqa: F401
start = time.monotonic()
try:
    dist.init_process_group("npusim", timeout=timedelta(seconds=20))
    report(init_s=time.monotonic() - start, transport=dist.group.WORLD._get_backend(torch.device("npusim")).transport)
    t = torch.ones(4, device=torch.device("npusim", RANK))
    dist.all_reduce(t)
    report(sum=t.tolist())
    dist.destroy_process_group()
except Exception as e:
    report(error=str(e), error_type=type(e).__name__, after=time.monotonic() - start)
"""


def garbage_connections(port):
    def conn(payload):
        s = socket.create_connection(("127.0.0.1", port))
        if payload:
            s.sendall(payload)
        return s
    return {
        "random bytes": conn(os.urandom(hs.HELLO.size)),
        "http": conn(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 40),
        "old version": conn(hs.hello(1, 3, version=1)),
        "half a hello": conn(hs.hello(1, 3)[:20]),
        "wrong world": conn(hs.hello(1, 7)),
        "a megabyte": conn(os.urandom(1 << 20)[:65536]),
    }


@pytest.mark.parametrize("kind", ["silent", "garbage"])
def test_strangers_on_the_listening_port_cost_the_group_nothing(kind):
    """Connections that say nothing (3) or nonsense, made to rank 0's listener before the
    real peers arrive: the group forms as fast as without them, and each is closed."""
    seen = {}

    def control(procs, workdir):
        try:
            skip = store_port(procs[0].pid)
            bound = wait_for(lambda: {a for a in listening(procs[0].pid) if a[1] != skip}, 60, "rank 0 to listen")
            seen["bound"] = sorted(bound)
            port = bound.pop()[1]
            strangers = ({f"silent {i}": socket.create_connection(("127.0.0.1", port)) for i in range(3)}
                         if kind == "silent" else garbage_connections(port))
            seen["gate_at"] = time.time()
            open(os.path.join(workdir, "go"), "w").close()
            seen["closed"] = {name: hs.closed_by_peer(s, 10) for name, s in strangers.items()}
        except Exception as e:  # reported through `seen`
            seen["error"] = repr(e)

    outcomes = launch(GATED, 3, timeout=90, control=control)
    assert_clean(outcomes)
    assert "error" not in seen, seen
    created = max(o.result("done_at") for o in outcomes) - seen["gate_at"]
    print(f"\n{kind}: group of 3 created {created:.3f} s after the peers were let in, with "
          f"{len(seen['closed'])} strangers connected first")
    for o in outcomes:
        assert o.result("sum") == [3.0] * 4, describe(outcomes)
    assert [a for a, _ in seen["bound"]] == ["127.0.0.1"], seen["bound"]  # one host: loopback only
    assert created < 5.0, created  # was ~10 s per silent connection
    assert all(seen["closed"].values()), seen["closed"]


def test_a_stranger_without_the_secret_is_refused_and_takes_no_slot():
    """A well-formed hello claiming to be rank 1, then a forged proof (the listener's own
    MAC reflected back): refused without an ack; the real rank 1 then joins."""
    seen = {}

    def control(procs, workdir):
        try:
            port = wait_for(lambda: {p for _, p in listening(procs[0].pid)} - {store_port(procs[0].pid)}, 60,
                            "rank 0 to listen").pop()
            s = socket.create_connection(("127.0.0.1", port))
            h = hs.hello(1, 2)
            s.sendall(h)  # queued ahead of the real rank 1, answered once rank 0 has everyone's records
            open(os.path.join(workdir, "go"), "w").close()
            challenge = hs.recv_exact(s, hs.CHALLENGE.size)
            magic, status, rank, _, _, mac = hs.CHALLENGE.unpack(challenge)
            seen["challenge"] = (magic == hs.HELLO_MAGIC, status, rank)
            s.sendall(hs.PROOF.pack(hs.HELLO_MAGIC, 0, mac))
            seen["after_forged_proof"] = hs.recv_exact(s, hs.ACK.size, timeout=5)
        except Exception as e:
            seen["error"] = repr(e)
            open(os.path.join(workdir, "go"), "w").close()

    outcomes = launch(GATED, 2, timeout=90, control=control)
    assert_clean(outcomes)
    assert seen.get("challenge") == (True, 0, 0), seen
    assert seen["after_forged_proof"] == b"", seen  # closed, no ack
    for o in outcomes:
        assert o.result("sum") == [2.0] * 4


# ------------------------------------------------------------------ playing a peer

REAL = """
import torch_npu_sim  # noqa: F401
from torch_npu_sim import _C
me, world = int(os.environ["GROUP_RANK"]), int(os.environ["GROUP_WORLD"])
store = dist.TCPStore("127.0.0.1", int(os.environ["MASTER_PORT"]), None, True, timedelta(seconds=60),
                      wait_for_workers=False)
open(os.path.join(os.environ["DIST_TEST_DIR"], "store_up"), "w").close()
start = time.monotonic()
try:
    pg = _C._create_process_group(store, me, world, 20.0, "hardening")
    report(created=True, after=time.monotonic() - start)
except Exception as e:
    report(error=str(e), error_type=type(e).__name__, after=time.monotonic() - start)
time.sleep(float(os.environ.get("LINGER", "0")))
"""


def client_store(pid, workdir):
    import torch.distributed as dist
    from datetime import timedelta
    wait_for(lambda: os.path.exists(os.path.join(workdir, "store_up")), 60, "the store")
    return dist.TCPStore("127.0.0.1", store_port(pid), None, False, timedelta(seconds=30))


@pytest.mark.parametrize("knows_secret", [False, True])
def test_the_dialer_checks_the_listener(knows_secret):
    """Rank 1 is real; rank 0 is played here. Without the secret, rank 1 refuses the
    listener's proof and sends none of its own. With it, Python's HMAC and the backend's
    agree both ways, and rank 1 gets as far as the commit (refused here, by name)."""
    seen = {}

    def control(procs, workdir):
        try:
            store = client_store(procs[0].pid, workdir)
            secret = os.urandom(32)
            listener = socket.create_server(("127.0.0.1", 0))
            store.set("npusim/0/secret", secret.hex())
            store.set("npusim/0/checksum", "0")  # rank 0 decides the group's payload checksums
            store.set("npusim/0/rank/0", hs.record(2, "elsewhere|x", "pid:[0]", 1, 1, listener.getsockname()[1],
                                                   transport="tcp", explicit=1))
            received = b""
            for _ in range(3 if knows_secret else 1):  # tcp: three connections per pair
                conn, _ = listener.accept()
                h, challenge = hs.answer_hello(conn, secret if knows_secret else os.urandom(32), 0)
                proof = hs.recv_exact(conn, hs.PROOF.size, timeout=5)
                received += h + proof
                if knows_secret:
                    assert proof == hs.PROOF.pack(hs.HELLO_MAGIC, 0, hs.client_mac(secret, h, challenge)), "bad proof"
                    conn.sendall(hs.ACK.pack(hs.HELLO_MAGIC, 0))
                    if hs.HELLO.unpack(h)[2] == 0:
                        control_conn = conn
            if knows_secret:
                control_conn.sendall(hs.setup_frame(hs.COMMIT, b"npusim: refused by the test's rank 0"))
            seen["proof"] = proof
            seen["secret_on_wire"] = secret in received or secret.hex().encode() in received
        except Exception as e:
            seen["error"] = repr(e)

    outcomes = launch(REAL, 1, env={"GROUP_RANK": "1", "GROUP_WORLD": "2", "NPUSIM_SOCKET_ADDR": "127.0.0.1"},
                      timeout=60, control=control)
    assert "error" not in seen, (seen, describe(outcomes))
    o = outcomes[0]
    print(f"\nimpostor listener (knows secret: {knows_secret}): rank 1 failed after {o.result('after'):.3f} s")
    assert seen["secret_on_wire"] is False
    if knows_secret:
        assert "refused by the test's rank 0" in o.result("error"), o.result("error")
    else:
        assert seen["proof"] == b"", "rank 1 answered an unproven listener"
        assert o.result("error_type") == "DistNetworkError"
        assert "failed to prove it knows the group secret" in o.result("error"), o.result("error")
    assert o.result("after") < 5


def npusim_segments():
    return {f for f in os.listdir("/dev/shm") if f.startswith("npusim-")}


def test_sigkill_of_rank0_between_creating_and_unlinking_the_segment_leaves_nothing():
    """Rank 0 is real and is SIGKILLed while it holds a fresh segment that rank 1 (played
    here, a member with the secret) never maps. The segment is tagged with rank 0's pid,
    and the next group created on this machine removes it; live owners' segments stay."""
    seen = {}

    def control(procs, workdir):
        try:
            store = client_store(procs[0].pid, workdir)
            secret = bytes.fromhex(store.get("npusim/0/secret").decode())
            rank0 = hs.parse_record(store.get("npusim/0/rank/0").decode())
            host, pidns, pid, start = hs.this_process_tag()
            assert rank0["host"] == host and rank0["pidns"] == pidns
            store.set("npusim/0/rank/1", hs.record(2, host, pidns, pid, start, 1))
            s = hs.dial_as_member(int(rank0["port"]), secret, 1, 2)
            kind, name = hs.read_setup(s)
            seen["offer"] = (kind, name.decode())
            seen["existed"] = os.path.exists("/dev/shm" + name.decode())
            seen["pid0"] = procs[0].pid
            os.kill(procs[0].pid, signal.SIGKILL)
        except Exception as e:
            seen["error"] = repr(e)

    outcomes = launch(REAL, 1, env={"GROUP_RANK": "0", "GROUP_WORLD": "2", "NPUSIM_TRANSPORT": "shm"},
                      timeout=60, control=control)
    assert "error" not in seen, (seen, describe(outcomes))
    kind, name = seen["offer"]
    assert kind == hs.OFFER and seen["existed"], seen
    assert outcomes[0].returncode == -9
    ns = os.readlink("/proc/self/ns/pid")[5:-1]
    assert name.split("-")[1:3] == [ns, str(seen["pid0"])], name  # tagged with its creator
    # beside it: a segment named for a live process (this one), which must stay
    _, _, pid, start = hs.this_process_tag()
    live = f"npusim-{ns}-{pid}-{start}-" + "ab" * 16
    open("/dev/shm/" + live, "w").close()
    try:
        again = launch(PLAIN, 2, timeout=60)
        assert_clean(again)
        assert not os.path.exists("/dev/shm" + name), "the dead rank's segment is still there"
        assert os.path.exists("/dev/shm/" + live), "a live process's segment was removed"
    finally:
        os.unlink("/dev/shm/" + live)
