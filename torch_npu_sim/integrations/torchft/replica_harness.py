"""Runs torchft replica groups on npusim as real processes, optionally SIGKILLing one mid-run.

A Lighthouse (in this process), one c10d store per replica group incarnation (in this
process, so a killed group's restart gets a clean one), and ``group_size`` processes per
group running ``replica_worker``. With ``kill_replica`` set, that group's processes are
SIGKILLed once it has committed ``kill_at_step`` and restarted at once (as a job
supervisor would); training then stops ``steps_after_rejoin`` steps after the restarted
group's first commit. Without it, training stops at ``steps``. Every child is killed at
the end, on failure too; ``deadline_s`` bounds the whole run.

Used by examples/torchft_replicas.py, tests/integrations/test_torchft.py and
benchmarks/bench_torchft.py.
"""
from __future__ import annotations

import json
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import torch.distributed as dist

WORKER = "torch_npu_sim.integrations.torchft.replica_worker"
# The lighthouse runs in its own process (its log level is fixed when torchft is imported);
# it prints its address and exits when its stdin closes, so it never outlives this process.
# A quorum waits up to 3 s for a live (heartbeating) group that is late, e.g. on a loaded machine.
LIGHTHOUSE = """
import sys
from torchft.coordination import LighthouseServer
server = LighthouseServer(bind="[::]:0", min_replicas=int(sys.argv[1]), join_timeout_ms=3000, quorum_tick_ms=50,
                          heartbeat_timeout_ms=1000)
print(server.address(), flush=True)
sys.stdin.read()
server.shutdown()
"""


@dataclass
class Run:
    """What happened: every worker event, tagged with (replica, incarnation, group_rank)."""
    events: list = field(default_factory=list)
    timeline: list = field(default_factory=list)  # (seconds since start, text)
    start: float = 0.0
    kill_time: float | None = None
    kill_step: int | None = None  # the last step the killed group committed
    stop_step: int | None = None
    logs: dict = field(default_factory=dict)  # (replica, incarnation, group_rank) -> last output lines

    def of(self, kind: str, replica=None, incarnation=None):
        return [e for e in self.events if e["kind"] == kind and (replica is None or e["replica"] == replica)
                and (incarnation is None or e["incarnation"] == incarnation)]

    def final_params(self):
        """(replica, group_rank) -> final parameters, from the last incarnation of each group."""
        done = {}
        for e in self.of("done"):
            done[(e["replica"], e["group_rank"])] = e["params"]
        return done

    def loss_curve(self, replica: int, incarnation: int = 0) -> dict[int, float]:
        """Committed step -> eval loss after it, as seen by group rank 0 of that incarnation."""
        return {e["step"]: e["eval_loss"] for e in self.of("step", replica, incarnation)
                if e["committed"] and e["group_rank"] == 0}

    def recovery(self, replica: int) -> dict:
        """Seconds from the kill to: the survivors' first commit, the restarted group's worker
        being ready, its first step (healed from a peer) and its first commit."""
        assert self.kill_time is not None, "no replica group was killed in this run"
        # a survivor's commit of the step the killed group had already committed is not recovery
        survivors = [e for e in self.of("step") if e["replica"] != replica and e["committed"]
                     and e["step"] > self.kill_step]
        back = self.of("step", replica, incarnation=1)
        ready = self.of("ready", replica, incarnation=1)
        commits = [e for e in back if e["committed"]]
        since = lambda events: round(events[0]["t"] - self.kill_time, 3) if events else None  # noqa: E731
        return dict(survivors_commit_s=since(survivors), restarted_ready_s=since(ready),
                    restarted_first_step_s=since(back), training_again_s=since(commits),
                    healed_to_step=back[0]["step"] if back else None)


def run(mode: str = "ddp", groups: int = 3, group_size: int = 1, min_replicas: int = 2, steps: int = 12,
        kill_replica: int | None = None, kill_at_step: int = 4, steps_after_rejoin: int = 4,
        step_sleep: float = 0.05, timeout_s: float = 10.0, deadline_s: float = 150.0, log=None) -> Run:
    if mode not in ("ddp", "hsdp"):
        raise ValueError(f"mode must be 'ddp' or 'hsdp', got {mode!r}")
    if kill_replica is not None and not 0 <= kill_replica < groups:
        raise ValueError(f"kill_replica {kill_replica} is not one of the {groups} replica groups")
    result = Run(start=time.time())
    note = lambda text: (result.timeline.append((round(time.time() - result.start, 3), text)),  # noqa: E731
                         log and log(f"[{time.time() - result.start:7.3f}s] {text}"))
    events: queue.Queue = queue.Queue()
    workdir = tempfile.mkdtemp(prefix="npusim-torchft-")
    stop_file = os.path.join(workdir, "stop_step")
    go_file = os.path.join(workdir, "go")
    procs: dict[tuple, subprocess.Popen] = {}
    readers: list[threading.Thread] = []
    stores = []
    lighthouse = subprocess.Popen([sys.executable, "-c", LIGHTHOUSE, str(min_replicas)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  env=dict(os.environ, RUST_LOG="warn"))
    ready, _, _ = select.select([lighthouse.stdout], [], [], 120)
    lighthouse_addr = lighthouse.stdout.readline().strip() if ready else ""
    if not lighthouse_addr.startswith("http"):
        lighthouse.kill()
        raise RuntimeError(f"the lighthouse did not start (exit code {lighthouse.wait()})")
    note(f"lighthouse at {lighthouse_addr}; {groups} replica groups x {group_size} ({mode}), "
         f"min_replica_size {min_replicas}")

    def read(key, stream, parse_events):
        tail = result.logs.setdefault(key, [])
        for line in stream:
            if parse_events and line.startswith("EVENT "):
                event = json.loads(line[6:])
                event.update(replica=key[0], incarnation=key[1], group_rank=key[2])
                events.put(event)
            else:
                tail.append(line.rstrip())
                del tail[:-40]

    def launch(replica: int, incarnation: int) -> None:
        store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
        stores.append(store)
        for group_rank in range(group_size):
            cmd = [sys.executable, "-m", WORKER, "--replica", str(replica), "--group-rank", str(group_rank),
                   "--group-size", str(group_size), "--store-port", str(store.port), "--lighthouse",
                   lighthouse_addr, "--mode", mode, "--min-replicas", str(min_replicas), "--stop-file",
                   stop_file, "--go-file", go_file, "--timeout", str(timeout_s), "--step-sleep", str(step_sleep)]
            env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", RUST_LOG="warn")
            # events on stdout, logs on stderr: torchft's threads log while a long event line is written
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            key = (replica, incarnation, group_rank)
            procs[key] = proc
            for stream, parse_events in ((proc.stdout, True), (proc.stderr, False)):
                readers.append(threading.Thread(target=read, args=(key, stream, parse_events), daemon=True))
                readers[-1].start()

    def write_stop(step: int) -> None:
        with open(stop_file + ".tmp", "w") as f:
            f.write(str(step))
        os.replace(stop_file + ".tmp", stop_file)  # workers never read half a number
        result.stop_step = step
        note(f"all groups stop at step {step}")

    try:
        if kill_replica is None:
            write_stop(steps)
        for replica in range(groups):
            launch(replica, 0)
        note(f"launched {groups * group_size} processes")
        seen_first_commit = False
        survivors_committed = back_committed = back_stepped = back_in_full = False
        while True:
            if time.time() - result.start > deadline_s:
                raise TimeoutError(f"torchft run passed its {deadline_s} s deadline; last output: "
                                   f"{ {k: v[-5:] for k, v in result.logs.items()} }")
            # done when every process exited and everything they printed has been read
            exited = all(p.poll() is not None for p in procs.values())
            if exited and not any(r.is_alive() for r in readers) and events.empty():
                break
            try:
                e = events.get(timeout=0.2)
            except queue.Empty:
                continue
            result.events.append(e)
            who = f"replica {e['replica']}" + (f" rank {e['group_rank']}" if group_size > 1 else "") + \
                  (" (restarted)" if e["incarnation"] else "")
            if e["kind"] == "ready" and e["incarnation"]:
                note(f"{who}: process up, manager ready")
            elif e["kind"] == "ready" and len(result.of("ready")) == groups * group_size:
                open(go_file, "w").close()
                note("every replica group is up: training starts")
            if e["kind"] != "step":
                continue
            if e["committed"] and not seen_first_commit:
                seen_first_commit = True
                note(f"first step committed ({e['participants']} replica groups in the quorum)")
            killed = result.kill_time is not None
            if (kill_replica is not None and not killed and e["replica"] == kill_replica and e["committed"]
                    and e["step"] >= kill_at_step):
                for (r, inc, _), p in procs.items():
                    if r == kill_replica and inc == 0:
                        p.send_signal(signal.SIGKILL)
                result.kill_time, result.kill_step = time.time(), e["step"]
                note(f"SIGKILL replica group {kill_replica} after it committed step {e['step']}")
                launch(kill_replica, 1)
                note(f"replica group {kill_replica} restarting")
            elif killed and e["replica"] != kill_replica and e["step"] > result.kill_step:
                if not e["committed"] and not survivors_committed:
                    note(f"{who}: step {e['step']} not committed (a peer failed; reconfiguring)")
                elif e["committed"] and not survivors_committed:
                    survivors_committed = True
                    note(f"{who}: committed step {e['step']} with {e['participants']} replica groups")
            elif killed and e["replica"] == kill_replica and e["incarnation"] == 1:
                if not back_stepped:
                    back_stepped = True
                    note(f"{who}: healed from a peer, now at step {e['step']}")
                if e["committed"] and not back_committed:
                    back_committed = True
                    note(f"{who}: committed step {e['step']} with {e['participants']} replica groups: "
                         "training again")
                    write_stop(e["step"] + steps_after_rejoin)
                if e["committed"] and e["participants"] == groups and not back_in_full:
                    back_in_full = True
                    note(f"{who}: committed step {e['step']} in the full quorum of {groups} replica groups")
        note("all processes exited")
        failed = {k: p.returncode for k, p in procs.items() if p.returncode not in (0, -signal.SIGKILL)}
        if failed:
            raise RuntimeError(f"workers failed: {failed}; output: { {k: result.logs.get(k, [])[-15:] for k in failed} }")
        return result
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        lighthouse.kill()
        lighthouse.wait()
        shutil.rmtree(workdir, ignore_errors=True)
