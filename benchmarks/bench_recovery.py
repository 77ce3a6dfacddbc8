"""Recovery from a killed rank, three ways, on real processes (medians of several runs):

- shrink:     DDP, 4 ranks, one SIGKILLed; the survivors' step raises, they
              ``dist.shrink_group`` and redo it (examples/elastic_ddp.py --mode shrink);
- survivor:   DDP on a survivor-mode group; the step completes over the survivors
              (examples/elastic_ddp.py --mode survivor);
- reconfigure: torch_npu_sim.comms, 3 ranks, one SIGKILLed; the survivors reconfigure
              among themselves and all_reduce again.

Reported: time from the SIGKILL to the survivors' first successful step (or collective),
steps done again, and, for survivor mode, the time a replacement process needs to join and
be healed (from its join call; the Python start of the process is reported apart).

    python benchmarks/bench_recovery.py [--runs 3]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import torch.distributed as dist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "elastic_ddp.py")

RECONFIGURE_WORKER = """
import os, sys, time, torch, torch.distributed as dist
from datetime import timedelta
from torch_npu_sim import comms
port, me, world = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
store = dist.TCPStore("127.0.0.1", port, is_master=False, wait_for_workers=False)
comm = comms.new_comm("npusim", "npusim", name="bench", store=store, enable_reconfigure=True, timeout=timedelta(seconds=30))
store.set(f"handle/{me}", comm.get_init_handle())
handles = [store.get(f"handle/{r}").decode() for r in range(world)]
comm.reconfigure(0, handles)
t = torch.ones(1024, device=comm.get_device())
for i in range(5):
    comm.all_reduce(t, comms.ReduceOp.SUM, async_op=False)
if me == 1:
    store.set("killed_at", repr(time.time()))
    os.kill(os.getpid(), 9)
try:
    while True:
        comm.all_reduce(t, comms.ReduceOp.SUM, async_op=False)
except RuntimeError:
    pass
comm.abort()
comm.reconfigure(1, [h for r, h in enumerate(handles) if r != 1])
comm.all_reduce(t.fill_(1), comms.ReduceOp.SUM, async_op=False)
assert t[0].item() == world - 1
store.set(f"recovered/{me}", repr(time.time()))
comm.finalize()
"""

JOIN_WORKER = """
import os, sys, time, torch, torch.distributed as dist
from datetime import timedelta
from torch_npu_sim.distributed.survivor import SurvivorGroup
started = time.time()
port, me, world, replacement = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
store = dist.TCPStore("127.0.0.1", port, is_master=False, wait_for_workers=False)
state = torch.full((1 << 20,), float(me), device=f"npusim:{me}")  # 4 MiB of "weights"
if replacement:
    store.set("replacement_python_s", repr(time.time() - float(sys.argv[5])))
    t0 = time.time()
    g = SurvivorGroup(store, me, world, timeout=timedelta(seconds=30), join=True)
    g.heal([state], src=0)
    store.set("join_heal_s", repr(time.time() - t0))
    assert bool((state == 0).all())
    sys.exit(0)
g = SurvivorGroup(store, me, world, timeout=timedelta(seconds=30))
if me == world - 1:
    os._exit(0)
x = torch.ones(1)
dist.all_reduce(x, group=g)
store.set(f"survived/{me}", "1")
store.wait(["replacement_started"], timedelta(seconds=60))
g.activate([world - 1])
g.heal([state], src=0)
"""


def run_example(mode: str, timeout: float = 120) -> tuple[float, int]:
    out = subprocess.run([sys.executable, EXAMPLE, "--mode", mode], capture_output=True, text=True, timeout=timeout)
    m = re.search(r"first completed step: ([\d.]+) ms; steps done again: (\d+)", out.stdout)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"elastic_ddp.py --mode {mode} failed:\n{out.stdout}\n{out.stderr[-2000:]}")
    return float(m.group(1)), int(m.group(2))


def run_workers(code: str, world: int, extra=lambda r: [], timeout: float = 120):
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=60))
    script = os.path.join("/tmp", f"npusim_bench_recovery_{os.getpid()}.py")
    with open(script, "w") as f:
        f.write(textwrap.dedent(code))
    procs = [subprocess.Popen([sys.executable, script, str(store.port), str(r), str(world), *extra(r)])
             for r in range(world)]
    return store, script, procs


def reconfigure_once() -> float:
    store, script, procs = run_workers(RECONFIGURE_WORKER, 3)
    try:
        for p in procs:
            p.wait(timeout=120)
        killed = float(store.get("killed_at"))
        return (max(float(store.get(f"recovered/{r}")) for r in (0, 2)) - killed) * 1000
    finally:
        [p.kill() for p in procs if p.poll() is None]
        os.unlink(script)


def join_once() -> tuple[float, float]:
    store, script, procs = run_workers(JOIN_WORKER, 3, extra=lambda r: ["0"] if r < 2 else ["0"])
    try:
        store.wait(["survived/0", "survived/1"], timedelta(seconds=60))
        procs[2].wait(timeout=60)
        start = time.time()
        procs.append(subprocess.Popen([sys.executable, script, str(store.port), "2", "3", "1", repr(start)]))
        store.set("replacement_started", "1")
        for p in procs:
            p.wait(timeout=120)
        return float(store.get("join_heal_s")) * 1000, float(store.get("replacement_python_s")) * 1000
    finally:
        [p.kill() for p in procs if p.poll() is None]
        os.unlink(script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    shrink, survivor, reconf, join = [], [], [], []
    for _ in range(args.runs):  # interleaved, so a noisy moment hurts every mode alike
        shrink.append(run_example("shrink"))
        survivor.append(run_example("survivor"))
        reconf.append(reconfigure_once())
        join.append(join_once())
    med = statistics.median
    print(f"recovery from a SIGKILLed rank, medians of {args.runs} runs (2-core host)")
    print(f"  shrink      (DDP, 4 ranks):  kill -> first step {med(r[0] for r in shrink):7.1f} ms, "
          f"steps done again {med(r[1] for r in shrink):.0f}")
    print(f"  survivor    (DDP, 4 ranks):  kill -> first step {med(r[0] for r in survivor):7.1f} ms, "
          f"steps done again {med(r[1] for r in survivor):.0f}")
    print(f"  reconfigure (comms, 3 ranks): kill -> first all_reduce {med(reconf):7.1f} ms")
    print(f"  replacement (survivor mode): join + heal 4 MiB {med(j[0] for j in join):7.1f} ms "
          f"(after its Python start: {med(j[1] for j in join):.0f} ms)")


if __name__ == "__main__":
    main()
