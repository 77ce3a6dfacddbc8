"""Rank programs for tests/distributed/test_netns_hosts.py, run inside the simulated hosts
(network namespaces). Each writes what it saw as JSON
(and tensors) into the directory given as its first argument; the harness compares.

  python netns_workers.py DIR collectives   under torchrun: results of a set of collectives
  python netns_workers.py DIR partition     RANK/WORLD_SIZE/STORE_ADDR/STORE_PORT: an
                                            all_reduce loop cut by a partition, then a new group
"""
import json
import os
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

import torch_npu_sim.distributed as npusim_dist

OUT, MODE = sys.argv[1], sys.argv[2]


def touch(name):
    open(os.path.join(OUT, name), "w").close()


def wait_for(name, seconds):
    end = time.monotonic() + seconds
    while not os.path.exists(os.path.join(OUT, name)):
        if time.monotonic() > end:
            raise TimeoutError(f"{name} never appeared in {OUT}")
        time.sleep(0.02)


def where():
    return {"netns": os.stat("/proc/self/ns/net").st_ino,
            "peers": list(npusim_dist.backend_of().peer_transports),
            "transport": npusim_dist.backend_of().transport}


def collectives():
    dist.init_process_group("npusim", timeout=timedelta(seconds=90))
    rank, world = dist.get_rank(), dist.get_world_size()
    dev = torch.device("npusim", int(os.environ["LOCAL_RANK"]))
    g = torch.Generator().manual_seed(1234 + rank)
    results = {}
    # Small, odd, and large enough for the reduce-scatter + all-gather path.
    for n in (5, 4099, (1 << 18) + 3):
        x = torch.randn(n, generator=g)
        t = x.to(dev)
        dist.all_reduce(t)
        results[f"all_reduce {n}"] = t.cpu()
        parts = [torch.empty(n, device=dev) for _ in range(world)]
        dist.all_gather(parts, x.to(dev))
        results[f"all_gather {n}"] = torch.stack(parts).cpu()
        b = x.to(dev)
        dist.broadcast(b, src=world - 1)
        results[f"broadcast {n}"] = b.cpu()
        xs = x[: n - n % world].to(dev)
        rs = torch.empty(xs.numel() // world, device=dev)
        dist.reduce_scatter_tensor(rs, xs)
        results[f"reduce_scatter {n}"] = rs.cpu()
        a2a = torch.empty_like(xs)
        dist.all_to_all_single(a2a, xs)
        results[f"all_to_all {n}"] = a2a.cpu()
    torch.save(results, os.path.join(OUT, f"tensors.{rank}.pt"))
    with open(os.path.join(OUT, f"info.{rank}.json"), "w") as f:
        json.dump(dict(where(), rank=rank, world=world), f)
    dist.destroy_process_group()


def partition():
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    log = open(os.path.join(OUT, f"result.{rank}.json"), "w")

    def report(**kw):
        log.write(json.dumps(kw) + "\n")
        log.flush()

    store = dist.TCPStore(os.environ["STORE_ADDR"], int(os.environ["STORE_PORT"]), world, rank == 0,
                          timeout=timedelta(seconds=120), wait_for_workers=False)
    dev = torch.device("npusim", rank)
    dist.init_process_group("npusim", store=dist.PrefixStore("before", store), rank=rank, world_size=world,
                            timeout=timedelta(seconds=float(os.environ.get("GROUP_TIMEOUT", "20"))))
    report(before=where())
    calls = 0
    try:
        while True:
            t = torch.full((1 << 16,), float(rank + 1), device=dev)
            dist.all_reduce(t)
            assert t[0].item() == world * (world + 1) / 2, t[0].item()
            calls += 1
            if calls == 20:
                touch(f"running.{rank}")
            if calls > 200000:
                raise RuntimeError("the partition never reached this rank")
    except Exception as e:  # the partition: every rank must get here, with a named error
        report(error=str(e).splitlines()[0], error_type=type(e).__name__, calls=calls,
               failed_ranks=npusim_dist.failed_ranks())
    touch(f"failed.{rank}")
    dist.destroy_process_group()
    wait_for("restored", 120)
    dist.init_process_group("npusim", store=dist.PrefixStore("after", store), rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    t = torch.full((1 << 16,), float(rank + 1), device=dev)
    dist.all_reduce(t)
    report(after=where(), sum=t[0].item())
    dist.destroy_process_group()
    touch(f"done.{rank}")
    if rank == 0:  # the store lives here: stay until every rank is done with it
        end = time.monotonic() + 60
        while time.monotonic() < end and sum(f.startswith("done.") for f in os.listdir(OUT)) < world:
            time.sleep(0.02)


if __name__ == "__main__":
    {"collectives": collectives, "partition": partition}[MODE]()
