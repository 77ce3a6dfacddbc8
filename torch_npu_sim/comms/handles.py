"""Init handles for ``reconfigure``: what identifies a live process, and the rank rule.

A handle is ``npusim:<rank>:<uuid>:<token>:<store address>``: the rank and uuid of the
communicator the process is in now (-1 when none), a token unique to the communicator
object (host, pid, random), and, for information, the store it rendezvouses through.

Ranks of the new communicator follow TorchComms: a ``list`` of handles gives each process
the position of its handle; for a ``set`` the backend decides, and, as TorchComms' NCCL
backend does when it shrinks and grows, the largest group of handles that come from one
previous communicator keep their relative order and go first, the others follow (sorted
by token, so every process computes the same order without talking).
"""
import os
import secrets
import socket
from dataclasses import dataclass

import torch.distributed as dist

PREFIX = "npusim"


@dataclass(frozen=True)
class HandleInfo:
    rank: int
    uuid: int
    token: str
    store: str


def new_token() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(6)}"


def store_address(store) -> str:
    while isinstance(store, dist.PrefixStore):
        store = store.underlying_store
    if isinstance(store, dist.TCPStore):
        return f"{store.host}:{store.port}"
    if isinstance(store, dist.FileStore):
        return f"file://{store.path}"
    return ""


def format_handle(rank: int, uuid: int, token: str, store: str) -> str:
    return f"{PREFIX}:{rank}:{uuid}:{token}:{store}"


def parse_handle(handle) -> HandleInfo:
    parts = handle.split(":", 4) if isinstance(handle, str) else []
    if len(parts) != 5 or parts[0] != PREFIX:
        raise RuntimeError(f"not an npusim init handle: {handle!r} (expected what get_init_handle() returns)")
    try:
        return HandleInfo(int(parts[1]), int(parts[2]), parts[3], parts[4])
    except ValueError:
        raise RuntimeError(f"malformed npusim init handle: {handle!r}") from None


def assign_ranks(init_handles) -> list[HandleInfo]:
    """The participants in rank order (see the module docstring); raises on duplicates."""
    if isinstance(init_handles, (set, frozenset)):
        infos = [parse_handle(h) for h in init_handles]
        ordered = None
    elif isinstance(init_handles, (list, tuple)):
        infos = ordered = [parse_handle(h) for h in init_handles]
    else:
        raise RuntimeError(f"init_handles must be a list or a set of handles, got {type(init_handles).__name__}")
    if not infos:
        raise RuntimeError("init_handles is empty")
    tokens = [i.token for i in infos]
    if len(set(tokens)) != len(tokens):
        raise RuntimeError("init_handles names the same process more than once")
    if ordered is not None:
        return ordered
    groups: dict[int, list[HandleInfo]] = {}
    for info in infos:
        if info.uuid >= 0 and info.rank >= 0:
            groups.setdefault(info.uuid, []).append(info)
    quorum = []
    for uuid in sorted(groups):  # ties: the lowest uuid, so that every process picks the same
        members = groups[uuid]
        if len({m.rank for m in members}) == len(members) and len(members) > len(quorum):
            quorum = members
    quorum = sorted(quorum, key=lambda i: i.rank)
    rest = sorted((i for i in infos if i not in quorum), key=lambda i: i.token)
    return quorum + rest
