"""Survivor mode: a process group whose collectives outlive their participants.

``SurvivorGroup(store, rank, world_size)`` is an opt-in ``ProcessGroup`` (pass it as
``group=`` / ``process_group=``). Ranks keep their numbers for the group's life; the
*members* (active ranks) change. A collective whose participant dies completes over the
survivors (SUM is the survivors' sum, AVG their mean), and its Work names the ranks that
failed (``work.failed_ranks``). ``deactivate(ranks)`` and ``activate(ranks)`` change the
membership explicitly; a replacement process joins with ``SurvivorGroup(..., join=True)``
once the members ``activate`` its rank, and ``heal(tensors, src)`` copies a survivor's state
to it. Nothing is silently partial: only this group completes over survivors; every other
npusim group fails with a named error.

How the survivors stay consistent. Each membership is a *generation* with its own npusim
backend. A collective runs in two phases on it: the data (the collective itself), then a
barrier ("everyone has the result"). A rank whose phase fails proposes a decision for the
generation in the store, with compare-and-set, so the first proposal wins and every rank
follows it: which ranks are gone, at which collective, and whether that collective's
result stands (the proposer passed the data phase, so everyone who gets past the data
phase holds the same full result) or is run again over the survivors from the inputs kept
before it started. A rank that finished a collective the decision re-runs cannot exist:
finishing needs every member past the data phase. The store must outlive the ranks (host
it in the launcher, as torchrun's agent does).

A membership change (``deactivate``/``activate``, the Nth call on every member) has its own
record, ``change/N``, and ends a generation as a failure does: the generation's decision
names either a failure or change N, never both, so a change is never taken for a failure
nor a failure for a change. A member whose change meets a failure decision follows the
failure and makes its change in the next generation; a rank whose collective meets a
change follows it (the collective stands if the change came after it, else runs again),
and its own later call of that change returns at once.

Collectives: all_reduce, broadcast, all_gather (list and tensor forms) and barrier. In
all_gather, the slot of a rank that is not a member when the collective returns (one
deactivated before, or one gone during it: ``work.failed_ranks``) holds zeros on every
member, whatever the buffer held before. Others raise NotImplementedError when called
as methods; torch's functions that reach a group through the c10d dispatcher instead fail
with torch's "No backend type associated with device type" error. With ``group=``, name
roots as ``group_src=``: the group is not registered with torch.distributed's global ranks.
"""
from __future__ import annotations

import io
import json
from datetime import timedelta

import torch
import torch.distributed as dist

from .. import _C

_MODE = "SurvivorGroup"


class SurvivorWork(dist.Work):
    """A finished collective, with the ranks that failed during it."""

    def __init__(self, result, failed_ranks: list[int]):
        super().__init__()
        self.failed_ranks = list(failed_ranks)
        self._future = torch.futures.Future()
        self._future.set_result(result)

    def wait(self, timeout=None) -> bool:
        return True

    def is_completed(self) -> bool:
        return True

    def is_success(self) -> bool:
        return True

    def get_future(self):
        return self._future


class SurvivorGroup(dist.ProcessGroup):
    def __init__(self, store, rank: int, world_size: int, timeout: timedelta = timedelta(seconds=30),
                 name: str = "survivors", join: bool = False):
        super().__init__(rank, world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"{_MODE}: rank {rank} is out of range for world size {world_size}")
        self._store = dist.PrefixStore(f"npusim-survivor/{name}/", store)
        self._name, self._timeout = name, timeout
        self._seq = 0
        self._changes = self._applied = 0  # membership changes called / followed by this rank
        self._inner = None
        if join:
            record = self._wait_for_activation()
            self._generation, self._members, self._seq = record["generation"], record["members"], record["seq"]
            self._changes = self._applied = record["changes"]
        else:
            self._generation, self._members = 0, list(range(world_size))
        self._open_generation()

    # ---------------------------------------------------------------- membership
    def active_ranks(self) -> list[int]:
        return list(self._members)

    @property
    def generation(self) -> int:
        return self._generation

    def deactivate(self, ranks: list[int]) -> None:
        """Removes `ranks` (alive or not) from the members. Called by the members that stay;
        a rank already gone (a failure removed it) is no longer there to remove."""
        ranks = self._check_ranks(ranks)
        if self.rank() in ranks:
            raise ValueError(f"{_MODE}: rank {self.rank()} cannot deactivate itself; the members that stay call this")
        self._change(gone=ranks, add=[])

    def activate(self, ranks: list[int]) -> None:
        """Adds `ranks` (replacement processes waiting in ``SurvivorGroup(..., join=True)``) to
        the members. Called by every member; the next collective includes the new ranks."""
        ranks = self._check_ranks(ranks)
        if self._changes >= self._applied and any(r in self._members for r in ranks):
            raise ValueError(f"{_MODE}: ranks {ranks} include active members {self._members}")
        self._change(gone=[], add=ranks)

    def heal(self, tensors: list[torch.Tensor], src: int) -> None:
        """Copies `tensors` from member `src` to every member (a replacement's state)."""
        for t in tensors:
            self.broadcast([t], _broadcast_options(src))

    # ---------------------------------------------------------------- collectives
    def allreduce(self, tensors, opts=None):
        op = opts.reduceOp if opts is not None else dist.ReduceOp.SUM

        def run(inner):
            o = dist.AllreduceOptions()
            o.reduceOp = op
            return inner.allreduce(tensors, o)
        return self._collective(run, tensors, restore=tensors)

    def broadcast(self, tensors, opts=None):
        root = opts.rootRank if opts is not None else 0

        def run(inner):
            if root not in self._members:
                raise dist.DistBackendError(f"{_MODE}: broadcast from rank {root}, which is not a member "
                                            f"(members: {self._members})")
            return inner.broadcast(tensors, _broadcast_options(self._members.index(root)))
        return self._collective(run, tensors, restore=tensors)

    def allgather(self, output_tensors, input_tensors, opts=None):
        def run(inner):
            mine = [[outs[r] for r in self._members] for outs in output_tensors]
            return inner.allgather(mine, input_tensors)
        work = self._collective(run, [t for outs in output_tensors for t in outs], restore=[])
        for outs in output_tensors:  # a rank that is not a member (now) has zeros, the same on every member
            for r, t in enumerate(outs):
                if r not in self._members:
                    t.zero_()
        return work

    def _allgather_base(self, output, input, opts=None):
        chunks = list(output.chunk(self.size()))
        return self.allgather([chunks], [input])

    def barrier(self, opts=None):
        return self._collective(lambda inner: inner.barrier(), [], restore=[])

    def getBackendName(self) -> str:
        return "npusim-survivor"

    # ---------------------------------------------------------------- the protocol
    def _collective(self, run, results: list[torch.Tensor], restore: list[torch.Tensor]):
        seq = self._seq
        self._seq += 1
        kept = [t.clone() for t in restore]
        failed: list[int] = []
        while True:
            done_data = False
            try:
                run(self._inner).wait()
                done_data = True
                self._inner.barrier().wait()
                return SurvivorWork(results, failed)
            except dist.DistBackendError as error:
                decision = self._decide(dict(kind="failure", op=seq, gone=self._gone_ranks(error), add=[],
                                             keep=done_data), results if done_data else None)
            if decision["kind"] == "failure":
                failed += [r for r in decision["gone"] if r not in failed]
            # it stands if the decider had finished it (a later op), or passed its data phase (keep)
            stands = decision["op"] > seq or (decision["op"] == seq and decision.get("keep", False))
            if stands and not done_data:
                if decision["op"] != seq:  # a decider past this collective: every member passed its data phase
                    raise dist.DistBackendError(f"{_MODE}: rank {self.rank()} lost collective #{seq}, which rank "
                                                f"{decision['by']} finished (generation {self._generation})")
                self._fetch_result(decision, results)
            self._follow(decision)
            if stands:
                return SurvivorWork(results, failed)
            for t, k in zip(restore, kept):  # run again over the survivors, from the inputs as they were
                t.copy_(k)

    def _gone_ranks(self, error) -> list[int]:
        gone = [self._members[r] for r in self._inner.failed_ranks if 0 <= r < len(self._members)]
        if not gone or self.rank() in gone:
            raise error  # not a peer failure (a mismatch, a local error): survivors cannot fix it
        return sorted(gone)

    def _change(self, gone: list[int], add: list[int]) -> None:
        """Membership change #n (every member's nth call): decided once in `change/n`, then
        made the end of the current generation, after any failure decided there first."""
        n = self._changes
        self._changes += 1
        while self._applied <= n:  # not yet followed (a failed collective may have followed it already)
            self._store.compare_set(f"change/{n}", "", json.dumps(dict(gone=gone, add=add, op=self._seq,
                                                                       by=self.rank())))
            self._follow(self._decide(dict(kind="change", change=n)))
        record = json.loads(self._store.get(f"change/{n}"))
        if record["gone"] != gone or record["add"] != add:
            raise ValueError(f"{_MODE}: membership change #{n} differs between members: rank {self.rank()} asked to "
                             f"remove {gone} and add {add}, rank {record['by']} to remove {record['gone']} and "
                             f"add {record['add']} (the latter was made)")

    def _decide(self, proposal: dict, result=None) -> dict:
        """The generation's one decision (the first proposal wins): a failure or a membership change."""
        key = f"gen/{self._generation}/decision"
        if not self._store.check([key]):
            proposal["by"] = self.rank()
            if result is not None:
                buffer = io.BytesIO()
                torch.save([t.detach().cpu() for t in result], buffer)
                self._store.set(f"gen/{self._generation}/result/{self.rank()}", buffer.getvalue())
            self._store.compare_set(key, "", json.dumps(proposal))
        decision = json.loads(self._store.get(key))
        if decision["kind"] == "change":  # its record was set before it was proposed
            if decision["change"] != self._applied:
                raise dist.DistBackendError(f"{_MODE}: generation {self._generation} ended with membership change "
                                            f"#{decision['change']}, but rank {self.rank()} is at change "
                                            f"#{self._applied}: the members' calls differ")
            decision.update(json.loads(self._store.get(f"change/{decision['change']}")))
        if self.rank() in decision["gone"]:
            self._close_generation()
            raise dist.DistBackendError(f"{_MODE}: rank {self.rank()} was excluded from the group by rank "
                                        f"{decision['by']} (generation {self._generation}); it may join again")
        return decision

    def _fetch_result(self, decision: dict, results: list[torch.Tensor]) -> None:
        data = self._store.get(f"gen/{self._generation}/result/{decision['by']}")
        for t, value in zip(results, torch.load(io.BytesIO(data))):
            t.copy_(value)

    def _follow(self, decision: dict) -> None:
        self._members = sorted((set(self._members) - set(decision["gone"])) | set(decision["add"]))
        if decision["kind"] == "change":
            self._applied = decision["change"] + 1
            for r in decision["add"]:
                self._store.set(f"activation/{r}", json.dumps(dict(
                    generation=self._generation + 1, members=self._members, seq=decision["op"],
                    changes=self._applied)))
        self._close_generation()
        self._generation += 1
        self._open_generation()

    def _open_generation(self) -> None:
        _C._init_distributed()
        store = dist.PrefixStore(f"gen/{self._generation}/pg/", self._store)
        self._inner = _C._create_process_group(store, self._members.index(self.rank()), len(self._members),
                                               self._timeout.total_seconds(), f"{self._name}/gen{self._generation}")

    def _close_generation(self) -> None:
        if self._inner is not None:
            inner, self._inner = self._inner, None
            inner.abort()     # in-flight work of the old generation fails now
            inner.shutdown()  # and the members still on it hear this rank leave

    def _wait_for_activation(self) -> dict:
        key = f"activation/{self.rank()}"
        try:
            self._store.wait([key], self._timeout)
        except Exception as e:
            raise dist.DistBackendError(f"{_MODE}: rank {self.rank()} was not activated by the members within "
                                        f"{self._timeout}") from e
        return json.loads(self._store.get(key))

    def _check_ranks(self, ranks) -> list[int]:
        ranks = sorted(set(int(r) for r in ranks))
        if not ranks:
            raise ValueError(f"{_MODE}: no ranks given")
        bad = [r for r in ranks if not 0 <= r < self.size()]
        if bad:
            raise ValueError(f"{_MODE}: ranks {bad} are not ranks of the group (size {self.size()})")
        return ranks


def _not_in_survivor_mode(name: str):
    def refuse(self, *args, **kwargs):
        raise NotImplementedError(f"{_MODE}: {name} is not available in survivor mode "
                                  "(all_reduce, broadcast, all_gather and barrier are)")
    refuse.__name__ = name
    return refuse


for _name in ("reduce_scatter", "_reduce_scatter_base", "reduce_scatter_tensor_coalesced", "alltoall",
              "alltoall_base", "gather", "scatter", "reduce", "send", "recv", "recv_anysource",
              "allreduce_coalesced", "allgather_coalesced", "allgather_into_tensor_coalesced"):
    setattr(SurvivorGroup, _name, _not_in_survivor_mode(_name))


def _broadcast_options(root: int):
    o = dist.BroadcastOptions()
    o.rootRank, o.rootTensor = root, 0
    return o


def allreduce_avg_hook(group: SurvivorGroup, bucket):
    """DDP communication hook for a SurvivorGroup: gradients averaged over the ranks alive
    (DDP's default hook divides by the group's fixed size). ``ddp.register_comm_hook(group, allreduce_avg_hook)``."""
    work = dist.all_reduce(bucket.buffer(), op=dist.ReduceOp.AVG, group=group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])
