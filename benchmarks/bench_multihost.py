"""all_reduce across two simulated hosts: npusim against gloo, measured in the same run.

    sudo python benchmarks/bench_multihost.py [--quick]

Two network namespaces joined by a veth pair (scripts/netns_hosts.sh) stand for two
hosts of two ranks each. npusim uses shared memory within a host and TCP across (per
pair); gloo uses TCP everywhere. For 4 KiB, 1 MiB and 64 MiB the median latency and the
bus bandwidth (nccl-tests: algbw x 2(n-1)/n) are reported, with the ratio to gloo. The
backends run one after the other on the same hosts; needs root.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import print_table  # noqa: E402

SCRIPT = os.path.join(HERE, "..", "scripts", "netns_hosts.sh")
SUBNET = "10.231.0"
SIZES = [4 << 10, 1 << 20, 64 << 20]
WORLD = 4


def rank_main(backend, rank, port, quick, out):
    import torch
    import torch.distributed as dist
    from datetime import timedelta

    os.environ.update(MASTER_ADDR=f"{SUBNET}.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=WORLD, timeout=timedelta(seconds=300))
    device = torch.device("npusim", rank) if backend == "npusim" else torch.device("cpu")
    results = {}
    for nbytes in SIZES:
        t = torch.ones(nbytes // 4, device=device)
        iters = (50 if nbytes <= 4096 else 20 if nbytes <= 1 << 20 else 5) * (1 if quick else 3)
        for _ in range(2):
            dist.all_reduce(t)
        dist.barrier()
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            dist.all_reduce(t)
            times.append(time.perf_counter() - start)
        results[nbytes] = statistics.median(times)  # rank 0's (an all_reduce ends on every rank together)
    kinds = None
    if backend == "npusim":
        import torch_npu_sim.distributed as nd
        kinds = list(nd.backend_of().peer_transports)
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"times": results, "peers": kinds}, f)
    dist.destroy_process_group()


def run(backend, hosts, port, quick):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "rank0.json")
        procs = []
        try:
            for rank in range(WORLD):
                argv = ["bash", SCRIPT, "exec", hosts, str(rank // 2), sys.executable, __file__, "--rank",
                        str(rank), "--backend", backend, "--port", str(port), "--out", out]
                # gloo would use the address of the machine's host name, absent from the namespaces
                env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME=f"{hosts}{rank // 2}")
                procs.append(subprocess.Popen(argv + (["--quick"] if quick else []), env=env))
            deadline = time.monotonic() + 900
            for p in procs:
                p.wait(timeout=max(1, deadline - time.monotonic()))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if any(p.returncode for p in procs):
            raise SystemExit(f"{backend}: a rank failed (exit codes {[p.returncode for p in procs]})")
        with open(out) as f:
            return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rank", type=int)
    ap.add_argument("--backend")
    ap.add_argument("--port", type=int)
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.rank is not None:
        import torch_npu_sim  # noqa: F401
        return rank_main(a.backend, a.rank, a.port, a.quick, a.out)
    if os.geteuid() != 0:
        raise SystemExit("bench_multihost needs root to create network namespaces")
    hosts = "npb" + uuid.uuid4().hex[:8]
    subprocess.run(["bash", SCRIPT, "create", hosts, SUBNET], check=True)
    try:
        gloo = run("gloo", hosts, 29611, a.quick)
        npusim = run("npusim", hosts, 29612, a.quick)
    finally:
        subprocess.run(["bash", SCRIPT, "destroy", hosts])
    rows = []
    for nbytes in SIZES:
        g, m = gloo["times"][str(nbytes)], npusim["times"][str(nbytes)]
        bus = lambda s: nbytes * 2 * (WORLD - 1) / WORLD / s / 1e9  # noqa: E731
        size = f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"
        rows.append([size, f"{g * 1e6:.0f}", f"{m * 1e6:.0f}", f"{m / g:.2f}x", f"{bus(g):.2f}", f"{bus(m):.2f}",
                     f"{bus(m) / bus(g):.2f}x"])
    print_table(f"all_reduce, 2 hosts x 2 ranks (network namespaces), {os.cpu_count()} cores; npusim peers of "
                f"rank 0: {npusim['peers']}",
                rows, ["size", "gloo us", "npusim us", "latency ratio", "gloo busbw GB/s", "npusim busbw GB/s",
                       "busbw ratio"])


if __name__ == "__main__":
    main()
