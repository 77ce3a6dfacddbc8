"""Deterministic fault injection for npusim process groups.

Faults act on the real bytes a rank sends to its peers (csrc/distributed/FaultInjection.h),
on either transport, so the rest of the group meets them as it would a real failure:

* ``kill``     the rank SIGKILLs itself as the operation's first message is about to leave;
* ``stop``     the rank SIGSTOPs itself there (its peers time out, naming it as silent);
* ``delay:MS`` the rank sleeps MS milliseconds before sending (the result is still right);
* ``drop``     one message of the operation is never sent (the peer times out, or sees
  that a message was lost, naming the rank);
* ``corrupt``  one byte of one payload is flipped on the wire (the caller's tensor is
  untouched). With checksums (``NPUSIM_CHECKSUM=1``) every rank then raises
  ``DistBackendError`` naming the sender, the operation and "checksum mismatch";
  without them the receivers silently get wrong data.

A rule picks the rank (its rank in the group of the operation; any rank if omitted),
the operation kind (``op``: broadcast, all_reduce, reduce, all_gather, gather, scatter,
reduce_scatter, all_to_all, barrier, send, or any) and which of that rank's matching
operations to hit: ``call=N`` is the Nth (1-based, default 1) since the rule was added,
counted over every npusim group of the process; ``step=S`` restricts the rule to
operations issued while :func:`set_step` last set S (``call`` then counts within them).
``op="any", call=N`` is the Nth collective or send of any kind. Each rule fires once;
the same rules and the same program hit the same operation every run.

Environment: ``NPUSIM_FAULTS`` holds rules in the same grammar, read when the first
group is created (a bad spec makes ``init_process_group`` raise ValueError on the ranks
that have it)::

    NPUSIM_FAULTS="rank=1,op=all_reduce,call=3,action=kill;rank=2,op=any,call=5,action=delay:200"

    spec   := rule (';' rule)*
    rule   := field (',' field)*        fields in any order; action is required
    field  := rank=N|any  op=KIND|any  call=N  step=N  at=message|read  action=ACTION
    ACTION := kill | stop | delay:MS | drop | corrupt

Python::

    from torch_npu_sim.distributed import faults
    faults.inject("kill", rank=1, op="all_reduce", call=3)
    with faults.injected("delay:200", rank=0, op="broadcast"):
        ...
    faults.set_step(7)  # matches rules with step=7
    faults.clear()
"""
from contextlib import contextmanager

__all__ = ["inject", "add_spec", "injected", "remove", "clear", "rules", "set_step", "get_step", "validate",
           "checksums_requested"]


def _c():
    from .. import _C

    return _C


def _rule(action, rank, op, call, step, at=None) -> str:
    if not isinstance(action, str):
        raise ValueError(f"faults: action must be a string such as 'kill' or 'delay:200', got {action!r}")
    fields = [f"rank={'any' if rank is None else rank}", f"op={op}"]
    if call is not None:
        fields.append(f"call={call}")
    if step is not None:
        fields.append(f"step={step}")
    if at is not None:
        fields.append(f"at={at}")
    fields.append(f"action={action}")
    for f in fields:  # one field each: separators inside a value would smuggle in others
        if "," in f or ";" in f or f.count("=") != 1:
            raise ValueError(f"faults: bad value in {f!r}")
    return ",".join(fields)


def inject(action: str, rank: int | None = None, op: str = "any", call: int | None = None,
           step: int | None = None, at: str | None = None) -> int:
    """Adds one rule; returns its id (for :func:`remove`). Raises ValueError naming the bad
    part. ``action``: "kill", "stop", "delay:MS", "drop" or "corrupt". ``at="read"``: strike
    while the rank reads its peers' memory in place (kill, stop, delay) instead of on its
    first message of the operation."""
    for name, value in (("rank", rank), ("call", call), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"faults: {name} must be an int, got {value!r}")
    if at is not None and not isinstance(at, str):
        raise ValueError(f"faults: at must be 'message' or 'read', got {at!r}")
    (rule_id,) = _c()._faults_add(_rule(action, rank, op, call, step, at), "faults.inject")
    return rule_id


def add_spec(spec: str) -> list[int]:
    """Adds the rules of a spec in the ``NPUSIM_FAULTS`` grammar; returns their ids."""
    return list(_c()._faults_add(spec, "faults.add_spec"))


def validate(spec: str) -> None:
    """Raises ValueError naming the bad part of `spec`; adds nothing."""
    _c()._faults_check(spec, "faults.validate")


@contextmanager
def injected(action: str, rank: int | None = None, op: str = "any", call: int | None = None,
             step: int | None = None):
    """:func:`inject` for the duration of a ``with`` block; yields the rule id."""
    rule_id = inject(action, rank=rank, op=op, call=call, step=step)
    try:
        yield rule_id
    finally:
        remove(rule_id)


def remove(rule_id: int) -> bool:
    """Removes one rule; False if it no longer exists."""
    return bool(_c()._faults_remove(int(rule_id)))


def clear() -> None:
    """Removes every rule, those from ``NPUSIM_FAULTS`` included."""
    _c()._faults_clear()


def rules() -> list[dict]:
    """The rules in order: ``{"id", "spec", "matched" (operations counted), "fired"}``."""
    return list(_c()._faults_list())


def set_step(n: int | None) -> None:
    """Sets the training step that rules with ``step=`` match (None: no step)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ValueError(f"faults.set_step: the step must be a non-negative int or None, got {n!r}")
    _c()._faults_set_step(-1 if n is None else n)


def get_step() -> int | None:
    step = _c()._faults_step()
    return None if step < 0 else step


def checksums_requested() -> bool:
    """Whether ``NPUSIM_CHECKSUM`` asks for payload checksums here (rank 0's setting
    decides for a group when it is created). Raises ValueError on a bad value."""
    return bool(_c()._checksum_from_env())
