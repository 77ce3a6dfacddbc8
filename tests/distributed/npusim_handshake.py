"""The npusim join protocol seen from outside (csrc/distributed/Handshake.h, JoinInfo.h),
for tests that play a peer: a stranger, an impostor, or a member that misbehaves later.
It uses Python's own hmac/hashlib, so a handshake that succeeds against a real rank also
checks the backend's HMAC-SHA256."""
import hashlib
import hmac
import os
import socket
import struct
import time

HELLO_MAGIC = 0x3248504E  # "NPH2"
SETUP_MAGIC = 0x5453504E  # "NPST"
VERSION = 2
JOIN_VERSION = 103
HELLO = struct.Struct("<IHBBiiQ32s")
CHALLENGE = struct.Struct("<IIiI32s32s")
PROOF = struct.Struct("<II32s")
ACK = struct.Struct("<II")
OFFER, READY, COMMIT = 1, 2, 3
assert (HELLO.size, CHALLENGE.size, PROOF.size, ACK.size) == (56, 80, 40, 8)


def server_mac(secret, hello, challenge_head):
    return hmac.new(secret, b"npusim-server" + hello + challenge_head, hashlib.sha256).digest()


def client_mac(secret, hello, challenge):
    return hmac.new(secret, b"npusim-client" + hello + challenge, hashlib.sha256).digest()


def recv_exact(sock, n, timeout=10.0):
    """Up to n bytes; fewer only on EOF, reset or timeout."""
    sock.settimeout(timeout)
    data = b""
    try:
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data


def closed_by_peer(sock, timeout):
    """True if the other side closes `sock` within `timeout` (reading and dropping data)."""
    sock.settimeout(timeout)
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return False


def hello(rank, world, channel=0, generation=0, version=VERSION):
    return HELLO.pack(HELLO_MAGIC, version, channel, 0, rank, world, generation, os.urandom(32))


def dial_as_member(port, secret, rank, world, channel=0):
    """Completes the dialer's side with the right secret; checks the listener's proof."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    h = hello(rank, world, channel)
    s.sendall(h)
    ch = recv_exact(s, CHALLENGE.size)
    magic, status, _, _, _, mac = CHALLENGE.unpack(ch)
    assert magic == HELLO_MAGIC and status == 0, (magic, status)
    assert hmac.compare_digest(mac, server_mac(secret, h, ch[:48])), "the listener's proof does not verify"
    s.sendall(PROOF.pack(HELLO_MAGIC, 0, client_mac(secret, h, ch)))
    assert ACK.unpack(recv_exact(s, ACK.size)) == (HELLO_MAGIC, 0)
    return s


def answer_hello(conn, key, rank):
    """The listener's side up to its challenge, proving with `key`; returns (hello, challenge)."""
    h = recv_exact(conn, HELLO.size)
    assert len(h) == HELLO.size, h
    head = CHALLENGE.pack(HELLO_MAGIC, 0, rank, 0, os.urandom(32), b"\0" * 32)[:48]
    challenge = head + server_mac(key, h, head)
    conn.sendall(challenge)
    return h, challenge


def setup_frame(kind, payload=b""):
    return struct.pack("<III", SETUP_MAGIC, kind, len(payload)) + payload


def read_setup(sock, timeout=10.0):
    head = recv_exact(sock, 12, timeout)
    if len(head) < 12:
        return None, b""
    magic, kind, length = struct.unpack("<III", head)
    assert magic == SETUP_MAGIC, head
    return kind, recv_exact(sock, length, timeout)


def this_process_tag():
    """(host identity, pid namespace, pid, start time) as the backend records them."""
    boot = open("/proc/sys/kernel/random/boot_id").read().split()[0]
    stat = open("/proc/self/stat").read()
    start = stat[stat.rindex(")") + 2:].split()[19]
    # host: name, kernel, network namespace and /dev/shm (JoinInfo.cpp host_identity)
    shm = os.stat("/dev/shm")
    host = f"name:{socket.gethostname()},boot:{boot},net:{os.stat('/proc/self/ns/net').st_ino},shm:{shm.st_dev}.{shm.st_ino}"
    return host, f"{boot}/{os.readlink('/proc/self/ns/pid')}", os.getpid(), int(start)


def record(world, host, pidns, pid, start, port, transport="auto", ring=1 << 20, explicit=0, addr="127.0.0.1"):
    return (f"world={world};version={JOIN_VERSION};host={host};pidns={pidns};pid={pid};start={start};"
            f"transport={transport};ring={ring};addr={addr};port={port};explicit={explicit}")


def parse_record(text):
    return dict(item.split("=", 1) for item in text.split(";"))


# ------------------------------------------------------------------ watching processes

def listening(pid):
    """(address, port) of every TCP socket process `pid` listens on (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and f[9] in inodes:
            addr, port = f[1].split(":")
            found.add((socket.inet_ntoa(bytes.fromhex(addr)[::-1]), int(port, 16)))
    return found


def store_port(pid):
    environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    return int(next(e for e in environ if e.startswith(b"MASTER_PORT="))[12:])


def wait_for(predicate, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")
