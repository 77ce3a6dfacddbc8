"""Training that survives a killed rank: DDP on 4 simulated NPUs, rank 2 is SIGKILLed at
step 5, and the 3 survivors finish the run, in one of two ways:

- ``--mode shrink`` (default): the failed step raises; the survivors shrink the group
  (``dist.shrink_group``), wrap the model in DDP again and redo the step;
- ``--mode survivor``: DDP runs on a survivor-mode group
  (``torch_npu_sim.distributed.survivor.SurvivorGroup``); the step the victim missed
  completes over the survivors and nothing raises.

    python examples/elastic_ddp.py [--mode shrink|survivor] [--world 4] [--victim 2] [--kill-step 5] [--steps 12]

The launcher (this script without --worker) hosts the rendezvous store, so any rank may
die, rank 0 included. Each survivor prints a timeline; at the end the survivors compare
their weights bit for bit, and the launcher compares them with the same training done in
one process (the batches of the ranks alive at each step, averaged as DDP averages them).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

import torch_npu_sim.distributed
from torch_npu_sim.distributed.survivor import SurvivorGroup, allreduce_avg_hook

FEATURES, BATCH, LR = 16, 8, 0.1


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(FEATURES, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))


def batch(step: int, original_rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each original rank keeps its own data stream, so a step's data depends only on who is alive."""
    g = torch.Generator().manual_seed(1000 * step + original_rank)
    x = torch.randn(BATCH, FEATURES, generator=g)
    return x, x.sum(dim=1, keepdim=True).sin()


def worker(args) -> None:
    me = args.rank
    store = dist.TCPStore("127.0.0.1", args.port, is_master=False, timeout=timedelta(seconds=60))
    dist.init_process_group("npusim", store=store, rank=me, world_size=args.world, timeout=timedelta(seconds=30))
    device = torch.device("npusim", me % torch.npusim.device_count())
    model = make_model().to(device)
    if args.mode == "survivor":
        group = SurvivorGroup(store, me, args.world, timeout=timedelta(seconds=30))
        ddp = torch.nn.parallel.DistributedDataParallel(model, process_group=group)
        ddp.register_comm_hook(group, allreduce_avg_hook)  # average over the ranks alive
    else:
        group = None
        ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    alive = list(range(args.world))  # original ranks in the current group, in group order
    events, step, failed_at = [], 0, None

    def log(what, **kw):
        events.append(dict(t=time.time(), step=step, what=what, **kw))

    while step < args.steps:
        if me == args.victim and step == args.kill_step:
            print(json.dumps(dict(rank=me, killed_at=time.time(), step=step)), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        x, y = (t.to(device) for t in batch(step, me))
        try:
            loss = torch.nn.functional.mse_loss(ddp(x), y)
            loss.backward()  # DDP all-reduces the gradients here: a dead peer raises here
        except dist.DistBackendError as e:
            failed_at = failed_at or time.time()
            log("collective failed", error=str(e).splitlines()[0][:160])
            # The backend names the ranks behind its first failure (group numbering).
            gone = [alive[r] for r in torch_npu_sim.distributed.failed_ranks()]
            opt.zero_grad(set_to_none=True)
            t0 = time.time()
            dist.shrink_group([alive.index(r) for r in gone])
            alive = [r for r in alive if r not in gone]
            ddp = torch.nn.parallel.DistributedDataParallel(model)  # on the new default group
            log("shrunk", gone=gone, alive=alive, shrink_s=time.time() - t0)
            continue  # the failed step is done again by the survivors
        if group is not None and group.active_ranks() != alive:
            failed_at = failed_at or time.time()
            log("completed over the survivors", gone=sorted(set(alive) - set(group.active_ranks())),
                alive=group.active_ranks())
            alive = group.active_ranks()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if failed_at and not any(e["what"] == "first step after the failure" for e in events):
            log("first step after the failure")
        log("step", loss=round(loss.item(), 6), world=len(alive))
        step += 1

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    if group is None:
        everyone = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
        dist.all_gather(everyone, flat)
    else:
        everyone = [torch.full_like(flat, float("nan")) for _ in range(args.world)]
        dist.all_gather(everyone, flat, group=group)
        everyone = [everyone[r] for r in group.active_ranks()]
    identical = all(torch.equal(everyone[0], other) for other in everyone)
    print(json.dumps(dict(rank=me, events=events, alive=alive, identical=identical,
                          weights=flat.cpu().tolist())), flush=True)
    if group is None:
        dist.destroy_process_group()
    else:
        os._exit(0)  # the default group still counts the victim: leave without tearing it down


def reference(world: int, victim: int, kill_step: int, steps: int) -> torch.Tensor:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for step in range(steps):
        ranks = [r for r in range(world) if not (r == victim and step >= kill_step)]
        grads = None
        for r in ranks:
            model.zero_grad()
            x, y = batch(step, r)
            torch.nn.functional.mse_loss(model(x), y).backward()
            g = [p.grad.clone() for p in model.parameters()]
            grads = g if grads is None else [a + b for a, b in zip(grads, g)]
        for p, g in zip(model.parameters(), grads):
            p.grad = g / len(ranks)
        opt.step()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def launch(args) -> int:
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=60))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--port", str(store.port), "--world", str(args.world),
           "--mode", args.mode,
           "--victim", str(args.victim), "--kill-step", str(args.kill_step), "--steps", str(args.steps)]
    procs = [subprocess.Popen(cmd + ["--rank", str(r)], stdout=subprocess.PIPE, text=True) for r in range(args.world)]
    outputs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=args.timeout)
            outputs.append([json.loads(line) for line in out.splitlines() if line.startswith("{")])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    killed_at = next(r["killed_at"] for out in outputs for r in out if "killed_at" in r)
    finals = [out[-1] for r, out in enumerate(outputs) if r != args.victim]
    print(f"{args.world} ranks of DDP on npusim ({args.mode} mode); rank {args.victim} SIGKILLed at step {args.kill_step} "
          f"(exit code {procs[args.victim].returncode})")
    for f in finals:
        print(f"\nrank {f['rank']} (exit code {procs[f['rank']].returncode}):")
        for e in f["events"]:
            if e["what"] == "step" and e["step"] not in (0, args.kill_step - 1, args.kill_step, args.steps - 1):
                continue
            detail = {k: v for k, v in e.items() if k not in ("t", "step", "what")}
            print(f"  {(e['t'] - killed_at) * 1000:+9.1f} ms  step {e['step']:2d}  {e['what']}  {detail}")
    expected = reference(args.world, args.victim, args.kill_step, args.steps)
    got = torch.tensor(finals[0]["weights"])
    identical = all(f["identical"] for f in finals)
    error = (got - expected).abs().max().item()
    print(f"\nsurvivors {finals[0]['alive']}: weights identical on every survivor: {identical}; "
          f"max difference from the one-process reference: {error:.2e}")
    firsts = [next(e["t"] for e in f["events"] if e["what"] == "first step after the failure") for f in finals]
    recovery_ms = (max(firsts) - killed_at) * 1000
    steps_lost = sum(1 for e in finals[0]["events"] if e["what"] == "collective failed")
    print(f"from the kill to every survivor's first completed step: {recovery_ms:.1f} ms; steps done again: {steps_lost}")
    ok = identical and error < 1e-5 and all(procs[f["rank"]].returncode == 0 for f in finals)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["shrink", "survivor"], default="shrink")
    parser.add_argument("--world", type=int, default=4)
    parser.add_argument("--victim", type=int, default=2)
    parser.add_argument("--kill-step", type=int, default=5)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before the launcher gives up")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0
    return launch(args)


if __name__ == "__main__":
    sys.exit(main())
