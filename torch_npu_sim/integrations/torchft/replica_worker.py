"""One rank of a torchft replica group training on npusim (run by ``replica_harness``).

    python -m torch_npu_sim.integrations.torchft.replica_worker --replica 1 --group-rank 0 \
        --group-size 1 --store-port P --lighthouse http://... --mode ddp --min-replicas 2 --stop-file F

A small regression MLP, the same initial weights everywhere (seed 0), each replica group
its own data shard per step. ``--mode ddp``: torchft's DistributedDataParallel (one rank per
group). ``--mode hsdp``: FSDP2 over the ranks of the group on the ``npusim`` c10d backend,
gradients averaged across groups by ``manager.allreduce`` in FSDP2's all-reduce hook.

Prints one JSON line per event (``EVENT {...}``, with wall time ``t``): ``ready``, ``step``
(every should_commit: step, committed, participants, eval loss) and ``done`` (the final
parameters of this rank's shard). Training stops at the step written in the stop file.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

DIM, HIDDEN, BATCH = 8, 16, 16
LR, MOMENTUM = 0.02, 0.5


def emit(kind: str, **fields) -> None:
    print("EVENT " + json.dumps(dict(kind=kind, t=time.time(), **fields)), flush=True)


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(DIM, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, 1))


def batch(step: int, replica: int, group_rank: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's shard of step `step`: a fixed linear target plus noise."""
    gen = torch.Generator().manual_seed(1000 * step + 10 * replica + group_rank + 1)
    x = torch.randn(BATCH, DIM, generator=gen)
    w = torch.linspace(-1.0, 1.0, DIM)
    y = (x @ w).unsqueeze(1) + 0.05 * torch.randn(BATCH, 1, generator=gen)
    return x.to(device), y.to(device)


def eval_batch(device) -> tuple[torch.Tensor, torch.Tensor]:
    return batch(step=10**6, replica=0, group_rank=0, device=device)


def make_optimizer(params, mode: str) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=LR, momentum=MOMENTUM if mode == "ddp" else 0.0)


def reference_curve(groups: int, steps: int, mode: str = "ddp", group_size: int = 1,
                    device="npusim") -> dict[int, float]:
    """The undisturbed run in one process: each step averages the gradients of every rank's
    shard (what the allreduce computes), steps, and evaluates. Step -> eval loss."""
    model = make_model().to(device)
    optimizer = make_optimizer(model.parameters(), mode)
    x_eval, y_eval = eval_batch(device)
    curve = {}
    for step in range(steps):
        optimizer.zero_grad()
        ranks = [(r, g) for r in range(groups) for g in range(group_size)]
        for replica, group_rank in ranks:
            x, y = batch(step, replica, group_rank, device)
            (torch.nn.functional.mse_loss(model(x), y) / len(ranks)).backward()
        optimizer.step()
        with torch.no_grad():
            curve[step] = torch.nn.functional.mse_loss(model(x_eval), y_eval).item()
    return curve


def read_stop_step(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replica", type=int, required=True)
    p.add_argument("--group-rank", type=int, default=0)
    p.add_argument("--group-size", type=int, default=1)
    p.add_argument("--store-port", type=int, required=True)
    p.add_argument("--lighthouse", required=True)
    p.add_argument("--mode", choices=("ddp", "hsdp"), default="ddp")
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--go-file", required=True, help="training starts once it exists")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds; collectives and torchft RPCs")
    p.add_argument("--step-sleep", type=float, default=0.0, help="seconds of simulated compute per step")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from torchft import Manager

    from torch_npu_sim.integrations.torchft import DistributedDataParallel, ProcessGroupNpuSim

    device = torch.device("npusim", (args.replica * args.group_size + args.group_rank) % torch.npusim.device_count())
    torch.npusim.set_device(device)
    timeout = timedelta(seconds=args.timeout)
    model = make_model().to(device)

    if args.mode == "hsdp":
        from torch.distributed.fsdp import fully_shard

        store = dist.TCPStore("127.0.0.1", args.store_port, is_master=False, wait_for_workers=False)
        dist.init_process_group("npusim", store=dist.PrefixStore("fsdp/", store), rank=args.group_rank,
                                world_size=args.group_size, timeout=timeout)
        fully_shard(model)
        # the sharded DTensor parameters, held here because FSDP2 swaps the module's attributes
        # to unsharded tensors around forward, while the quorum thread may read the state dict
        params = {n: p.to_local() for n, p in model.named_parameters()}  # this rank's shards
    else:
        params = dict(model.named_parameters())
    # DDP heals the optimizer's momentum too; under FSDP2 it would be DTensors, so HSDP uses plain SGD
    optimizer = make_optimizer(model.parameters(), args.mode)

    def state_dict():
        # A snapshot: torchft's HTTP transport copies only cuda/xpu tensors to the host, so npusim
        # tensors would be served live, and a step taken before a peer fetched them would leak in.
        return {"params": {n: t.detach().clone() for n, t in params.items()},
                "optim": copy.deepcopy(optimizer.state_dict())}

    def load_state_dict(state):
        with torch.no_grad():
            for name, t in params.items():
                t.copy_(state["params"][name])
        if args.mode == "ddp":  # FSDP2's optimizer state holds DTensors: plain SGD state is rebuilt instead
            optimizer.load_state_dict(state["optim"])

    manager = Manager(
        pg=ProcessGroupNpuSim(timeout=timeout), load_state_dict=load_state_dict, state_dict=state_dict,
        min_replica_size=args.min_replicas, replica_id=f"replica_{args.replica}", store_addr="127.0.0.1",
        store_port=args.store_port, rank=args.group_rank, world_size=args.group_size,
        lighthouse_addr=args.lighthouse, timeout=timeout, quorum_timeout=timedelta(seconds=60),
        connect_timeout=timeout,
        # every group starts from the same seeded weights, so step 0 needs no sync (with it, the
        # groups other than the first would heal at step 0 and contribute no gradient to it)
        init_sync=False)
    if args.mode == "hsdp":
        model.set_all_reduce_hook(lambda reduced: manager.allreduce(reduced).wait())
        run = model
    else:
        run = DistributedDataParallel(manager, model)
    emit("ready", replica=args.replica, group_rank=args.group_rank)
    # the first quorum waits for every group to be up (heartbeating), not only the quickest
    deadline = time.time() + 120
    while not os.path.exists(args.go_file):
        if time.time() > deadline:
            raise TimeoutError(f"{args.go_file} did not appear within 120 s")
        time.sleep(0.02)

    x_eval, y_eval = eval_batch(device)
    while True:
        stop = read_stop_step(args.stop_file)
        if stop is not None and manager.current_step() >= stop:
            break
        manager.start_quorum()
        optimizer.zero_grad()
        x, y = batch(manager.current_step(), args.replica, args.group_rank, device)
        torch.nn.functional.mse_loss(run(x), y).backward()
        if args.step_sleep:
            time.sleep(args.step_sleep)
        step = manager.current_step()
        committed = manager.should_commit()
        if committed:
            optimizer.step()
        with torch.no_grad():
            eval_loss = torch.nn.functional.mse_loss(run(x_eval), y_eval).item()
        # a group that healed from a peer starts at the peer's step, not at 0
        emit("step", step=step, committed=committed, participants=manager.num_participants(), eval_loss=eval_loss)
    final = {n: t.detach().cpu().flatten().tolist() for n, t in params.items()}
    emit("done", step=manager.current_step(), params=final)
    manager.shutdown(wait=False)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
