"""Long-lived rank processes for one world size, fed programs through pipes.

Starting `world` Python processes and their groups takes seconds; a program takes well
under one. So a pool starts once and runs program after program. Every wait is bounded:
a program that does not finish within its timeout, a rank that dies or answers
nonsense, or a rank that reports an exception (its groups may now disagree on what
comes next) fails that program, and the pool is killed, to be restarted for the next."""
import atexit
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from .programs import Program

STARTUP_TIMEOUT = 180.0  # eight ranks importing torch on two busy cores
_LIVE_POOLS: "set[RankPool]" = set()


@dataclass
class Outcome:
    ok: bool
    problems: list  # what went wrong, rank by rank (empty when ok)
    seconds: float
    in_place: bool = False  # some collective read peers' memory in place


class PoolBroken(Exception):
    """The pool could not run the program to the end (hang, crash, exception)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def program_timeout(program: Program) -> float:
    """Generous for eight ranks sharing two cores, small enough that a hang costs little."""
    mib = program.payload_bytes() / (1 << 20)
    calls = sum(c.repeat for c in program.calls)
    return 30.0 + calls * (2.0 + mib * program.world * 0.15)


class RankPool:
    def __init__(self, world: int, env: dict | None = None):
        self.world, self.env = world, dict(env or {})
        self.procs: list[subprocess.Popen] = []
        self.replies: list[queue.Queue] = []
        self.stderr_files = []
        self.started = 0

    def start(self) -> None:
        port = _free_port()
        for rank in range(self.world):
            env = dict(os.environ)
            env.update(self.env)
            env.update(RANK=str(rank), WORLD_SIZE=str(self.world), LOCAL_RANK=str(rank),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), PYTHONUNBUFFERED="1")
            env.setdefault("NPUSIM_DEVICE_COUNT", str(max(8, self.world)))
            err = tempfile.TemporaryFile("w+")
            # its own session: killing the pool kills anything a rank started too
            p = subprocess.Popen([sys.executable, "-m", "torch_npu_sim.testing.rank_worker"], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                 start_new_session=True)
            q: queue.Queue = queue.Queue()
            threading.Thread(target=self._read, args=(p, q), daemon=True).start()
            self.procs.append(p)
            self.replies.append(q)
            self.stderr_files.append(err)
        _LIVE_POOLS.add(self)
        self.started += 1
        answers = self._collect(time.monotonic() + STARTUP_TIMEOUT, "start")
        bad = [a for a in answers if not a.get("ready")]
        if bad:
            raise PoolBroken(f"ranks did not start: {bad}")

    @staticmethod
    def _read(proc, q):
        for line in proc.stdout:
            if line.startswith("FUZZ "):
                try:
                    q.put(json.loads(line[5:]))
                except ValueError:
                    q.put({"error": f"unreadable answer {line[:200]!r}"})
        q.put(None)  # end of output: the rank exited

    def _collect(self, deadline: float, what: str) -> list[dict]:
        answers, missing = [], []
        for rank, q in enumerate(self.replies):
            try:
                a = q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                a = {"hung": True}
            if a is None:
                a = {"exited": self.procs[rank].poll()}
            answers.append(a)
            if "hung" in a or "exited" in a:
                missing.append(rank)
        if missing:
            # what the other ranks said (often an exception that left these waiting)
            said = [f"rank {r}: " + (f"exited (code {a['exited']})" if "exited" in a else "hung") for r, a in
                    enumerate(answers) if r in missing]
            said += [a["error"] for a in answers if "error" in a]
            raise PoolBroken(f"during {what}: " + "; ".join(said[:len(missing)]) + "\n" + "\n".join(said[len(missing):])
                             + self._tails())
        return answers

    def _tails(self) -> str:
        out = []
        for rank, f in enumerate(self.stderr_files):
            try:
                f.seek(0)
                text = f.read()[-1500:].strip()
            except (OSError, ValueError):
                text = ""
            if text:
                out.append(f"\n--- rank {rank} stderr (tail):\n{text}")
        return "".join(out)

    def run(self, program: Program, timeout: float | None = None) -> Outcome:
        """Runs `program` on every rank. A broken pool is killed and the failure returned;
        the next run starts a fresh pool."""
        start = time.monotonic()
        try:
            if not self.procs:
                self.start()
            line = json.dumps({"program": program.to_json()}) + "\n"
            for p in self.procs:
                p.stdin.write(line)
                p.stdin.flush()
            answers = self._collect(start + (timeout or program_timeout(program)), "the program")
        except (PoolBroken, OSError) as e:
            self.kill()
            return Outcome(False, [f"pool failure: {e}"], time.monotonic() - start)
        problems = [p for a in answers for p in a.get("problems", [])]
        errors = [a["error"] for a in answers if "error" in a]
        if errors:
            self.kill()  # the ranks' groups may be out of step now
        in_place = any(a.get("in_place", 0) > 0 for a in answers)
        return Outcome(not problems and not errors, errors + problems, time.monotonic() - start, in_place)

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdin, p.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        for f in self.stderr_files:
            f.close()
        self.procs, self.replies, self.stderr_files = [], [], []
        _LIVE_POOLS.discard(self)

    def close(self) -> None:
        """Asks the ranks to quit, then kills whatever is left."""
        for p in self.procs:
            try:
                p.stdin.write(json.dumps({"quit": True}) + "\n")
                p.stdin.flush()
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self.kill()


class Pools:
    """One pool per world size, started on first use. Only one stays alive: ranks hold
    about a GiB each (shared rings, mapped peer memory), and the machine is shared; callers
    group their programs by world size, so switching is rare."""

    def __init__(self, env: dict | None = None):
        self.env, self.pools = env, {}

    def run(self, program: Program, timeout: float | None = None) -> Outcome:
        for world in [w for w in self.pools if w != program.world]:
            self.pools.pop(world).close()
        pool = self.pools.setdefault(program.world, RankPool(program.world, self.env))
        return pool.run(program, timeout)

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@atexit.register
def _kill_leftovers() -> None:
    for pool in list(_LIVE_POOLS):
        pool.kill()
