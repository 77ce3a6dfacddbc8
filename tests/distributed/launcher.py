"""Runs the ranks of a process group as real processes, under a hard wall-clock limit.

Each rank runs the same script with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set and
reports results as JSON lines prefixed by ``RESULT``. When the limit passes, every child
still alive (stopped ones included) is continued and killed, so a hung backend can never
hang the test run.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))

PRELUDE = '''
import json, os, signal, sys, time
from datetime import timedelta
import torch
import torch.distributed as dist
RANK = int(os.environ["RANK"]); WORLD = int(os.environ["WORLD_SIZE"])
def report(**kw):
    print("RESULT " + json.dumps(kw), flush=True)
'''


@dataclass
class RankOutcome:
    rank: int
    returncode: int | None
    stdout: str
    stderr: str
    killed: bool = False
    results: list = field(default_factory=list)

    def result(self, key):
        for r in self.results:
            if key in r:
                return r[key]
        raise KeyError(f"rank {self.rank} reported no {key!r}; stdout:\n{self.stdout}\nstderr:\n{self.stderr[-3000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(code: str, world: int, env: dict | None = None, timeout: float = 120.0,
           linger: float = 0.0, control=None) -> list[RankOutcome]:
    """Runs `code` on `world` ranks. Ranks still alive `linger` seconds after the first
    clean exit of all others (e.g. a stopped victim) are killed; so is everything at `timeout`.

    `control(procs, workdir)`, if given, runs in a thread of this process while the ranks
    run (e.g. to signal one of them); `workdir` is an empty directory the ranks also get
    as $DIST_TEST_DIR."""
    script = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False, dir=tempfile.gettempdir())
    script.write(PRELUDE + textwrap.dedent(code))
    script.close()
    workdir = tempfile.TemporaryDirectory()
    port = free_port()
    procs, outs = [], []
    try:
        for rank in range(world):
            full_env = dict(os.environ)
            full_env.update(env or {})
            full_env.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), DIST_TEST_DIR=workdir.name)
            out = tempfile.TemporaryFile("w+")
            err = tempfile.TemporaryFile("w+")
            procs.append(subprocess.Popen([sys.executable, script.name], env=full_env, stdout=out, stderr=err))
            outs.append((out, err))
        if control is not None:
            threading.Thread(target=control, args=(procs, workdir.name), daemon=True).start()
        deadline = time.monotonic() + timeout
        killed = [False] * world
        settled_at = None
        while any(p.poll() is None for p in procs):
            now = time.monotonic()
            alive = [i for i, p in enumerate(procs) if p.poll() is None]
            if settled_at is None and linger > 0:
                # every rank that exited on its own did so cleanly: the rest are victims
                if len(alive) < world and all(procs[i].returncode == 0 for i in range(world) if i not in alive):
                    settled_at = now
            if now >= deadline or (settled_at is not None and now - settled_at >= linger):
                for i in alive:
                    killed[i] = True
                    for sig in (signal.SIGCONT, signal.SIGKILL):
                        try:
                            os.kill(procs[i].pid, sig)
                        except ProcessLookupError:
                            pass
                for p in procs:
                    p.wait()
                break
            time.sleep(0.02)
        results = []
        for rank, (p, (out, err)) in enumerate(zip(procs, outs)):
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
            parsed = [json.loads(line[7:]) for line in stdout.splitlines() if line.startswith("RESULT ")]
            results.append(RankOutcome(rank, p.returncode, stdout, stderr, killed[rank], parsed))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        os.unlink(script.name)
        workdir.cleanup()


def describe(outcomes: list[RankOutcome]) -> str:
    return "\n".join(f"--- rank {o.rank} rc={o.returncode} killed={o.killed}\n{o.stdout[-2000:]}\n{o.stderr[-3000:]}"
                     for o in outcomes)


def assert_clean(outcomes: list[RankOutcome]) -> None:
    bad = [o for o in outcomes if o.returncode != 0 or o.killed]
    assert not bad, "ranks failed or hung:\n" + describe(outcomes)
