"""One rank of a fuzzing pool: a long-lived process that runs the programs its pool sends
on stdin (one JSON line each, every rank the same) and answers each with one line on
stdout, ``FUZZ {"problems": [...]}`` or ``FUZZ {"error": traceback}``.

Each call of a program runs on gloo (plain CPU tensors: the reference), on the streamed
npusim group (NPUSIM_PEER_ACCESS=0) and on the program's npusim group, with the program's
layouts, placements, concurrent writer and second group; the rank compares the results
itself, so only short answers travel back.

Run as ``python -m torch_npu_sim.testing.rank_worker`` with RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT set (the pool does this)."""
import gc
import json
import os
import sys
import threading
import traceback
from datetime import timedelta

import torch
import torch.distributed as dist

from .collectives import launch
from .oracle import bits, compare, exact_against_gloo
from .programs import Call, Program
from .tensors import SPARE_START, Maker

# Environment each npusim group is created under: the backend reads these per group, at
# group creation (Rendezvous.cpp), so one process can hold all three kinds at once.
GROUP_ENV = {
    "in_place": {"NPUSIM_TRANSPORT": "shm", "NPUSIM_PEER_ACCESS": "1"},
    "streamed": {"NPUSIM_TRANSPORT": "shm", "NPUSIM_PEER_ACCESS": "0"},
    "tcp": {"NPUSIM_TRANSPORT": "tcp", "NPUSIM_PEER_ACCESS": "1"},
}
GROUP_TIMEOUT = timedelta(seconds=float(os.environ.get("NPUSIM_FUZZ_GROUP_TIMEOUT", "60")))
WRITER_MAX_ROUNDS = 100_000


class Groups:
    """npusim groups made on first use: every rank runs the same programs, so every rank
    asks for them in the same order, as dist.new_group requires."""

    def __init__(self):
        self._groups = {"gloo": dist.group.WORLD}

    def get(self, name: str, copy: int = 0):
        key = name if name == "gloo" else f"{name}#{copy}"
        if key not in self._groups:
            saved = {k: os.environ.get(k) for k in GROUP_ENV[name]}
            os.environ.update(GROUP_ENV[name])
            try:
                self._groups[key] = dist.new_group(backend="npusim", timeout=GROUP_TIMEOUT)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        return self._groups[key]

    def peer_access(self, name: str, copy: int = 0) -> str | None:
        from torch_npu_sim.distributed import backend_of

        group = self._groups.get(f"{name}#{copy}")
        return None if group is None else backend_of(group).peer_access


class SpareWriter(threading.Thread):
    """Writes the spare elements of a call's buffers (never the collective's own elements)
    over and over while the call is made and runs; what it wrote last to each must be
    there after. Buffers appear while the call is being made: each round writes the
    spares that exist by then, and `last[i]` is what spare i got last."""

    def __init__(self, spares):
        super().__init__(daemon=True)
        self.spares, self.stop, self.last, self.error = spares, threading.Event(), [], None

    def run(self):
        try:
            for k in range(WRITER_MAX_ROUNDS):
                if self.stop.is_set():
                    return
                current = list(self.spares)
                values = [spare_value(s.dtype, k) for s in current]
                for s, v in zip(current, values):
                    s.fill_(v)
                self.last = values
        except Exception as e:  # reported, not raised on a thread nobody joins
            self.error = repr(e)

    def expected(self, index: int):
        return self.last[index] if index < len(self.last) else SPARE_START


def spare_value(dtype: torch.dtype, round_: int):
    return round_ % 2 == 0 if dtype == torch.bool else SPARE_START + 1 + round_ % 50


def run_target(call: Call, world: int, rank: int, iteration: int, groups: Groups, target: str,
               features: bool) -> dict[str, list]:
    """Runs one iteration of `call` on `target`; returns {label: outputs} and appends
    problems found on the spot (inputs changed, spare elements lost) under "problems"."""
    reference = target == "gloo"
    makers = [Maker(call, rank, iteration, plain=reference)]
    two = features and call.two_groups
    if two:
        makers.append(Maker(call, rank, iteration, plain=False))
    writer = SpareWriter(makers[0].spares) if features and call.writer else None
    if writer:
        writer.start()
    launched = [launch(call, world, rank, groups.get(target, k), m, reference, async_op=features and (call.writer or two))
                for k, m in enumerate(makers)]
    for l in launched:
        for w in l.works:
            w.wait()
    if writer:
        writer.stop.set()
        writer.join(30)
    problems = []
    if writer and (writer.is_alive() or writer.error):
        problems.append(f"{target}: the concurrent writer {'hung' if writer.is_alive() else 'failed: ' + writer.error}")
    for k, (m, l) in enumerate(zip(makers, launched)):
        label = target if k == 0 else f"{target} (second group)"
        for i, spare in enumerate(m.spares):
            want = writer.expected(i) if (writer and k == 0) else SPARE_START
            if not bool((spare == torch.tensor(want).to(spare.dtype)).all()):
                problems.append(f"{label}: elements beside the collective's views changed "
                                f"(want {want}, got {spare.cpu().unique()[:5].tolist()})")
                break
        if not reference:
            for t, values in l.inputs:
                if not torch.equal(bits(t.cpu()), bits(values)):
                    problems.append(f"{label}: an input tensor changed")
                    break
    results = {("gloo" if reference else target if k == 0 else f"{target} (second group)"):
               [_comparable(o) for o in l.outputs] for k, l in enumerate(launched)}
    results["problems"] = problems
    return results


def _comparable(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().cpu().clone()
    return torch.view_as_real(t) if t.is_complex() else t


def run_program(program: Program, rank: int, groups: Groups) -> list[str]:
    world, primary = program.world, program.group
    problems = []
    for index, call in enumerate(program.calls):
        for it in range(call.repeat):
            where = f"call {index} ({call.kind}) iteration {it}"
            targets = ["gloo", "streamed"] + ([primary] if primary != "streamed" else [])
            results = {}
            for target in targets:  # the last one under test: async, writer, second group
                got = run_target(call, world, rank, it, groups, target, features=target == targets[-1])
                problems += [f"{where}: {p}" for p in got.pop("problems")]
                results.update(got)
            gloo, streamed = results.pop("gloo"), results["streamed"]
            for label, outputs in results.items():
                problems += compare(f"{where}: {label} vs gloo", outputs, gloo, exact_against_gloo(call), world)
                if label != "streamed":
                    problems += compare(f"{where}: {label} vs streamed", outputs, streamed, True, world)
    if primary == "in_place" and groups.peer_access("in_place") == "no":
        problems.append("the in-place group stopped using peer access for good")
    return problems


def _handles_exported() -> int:
    return torch.npusim.sharing_stats()["handles_exported"]


def _die_with_the_pool() -> None:
    """SIGKILL this rank when the process that started it dies (Linux), so a killed fuzzer
    or test run leaves no rank behind, even one stuck in a collective."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere: the pool still kills its ranks, and a rank exits at the end of its stdin
    if os.getppid() == 1:
        os._exit(1)  # the parent is already gone


def main() -> None:
    _die_with_the_pool()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.npusim.set_device(rank % torch.npusim.device_count())
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=GROUP_TIMEOUT,
                            init_method=f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}")
    groups = Groups()
    # Joining a one-host group with peer access is what makes new device segments
    # shareable: join one before any program allocates, so that even the first program's
    # blocks can be read in place.
    groups.get("in_place")
    reply = sys.stdout
    sys.stdout = sys.stderr  # stray prints must not garble the protocol
    print("FUZZ " + json.dumps({"ready": True}), file=reply, flush=True)
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("quit"):
            break
        try:
            exported = _handles_exported()
            problems = run_program(Program.from_json(msg["program"]), rank, groups)
            # how often programs really read peers' memory in place (else the fuzzer tests little)
            answer = {"problems": [f"rank {rank}: {p}" for p in problems], "in_place": _handles_exported() - exported}
        except BaseException:
            answer = {"error": f"rank {rank}: " + traceback.format_exc(limit=-4)[-3000:]}
        # hand cached blocks back between programs: ranks of idle pools then hold little
        # (each program makes its tensors afresh anyway)
        gc.collect()
        torch.npusim.empty_cache()
        print("FUZZ " + json.dumps(answer), file=reply, flush=True)
    reply.flush()
    os._exit(0)  # no group teardown: a pool that quits must never hang on it


if __name__ == "__main__":
    main()
