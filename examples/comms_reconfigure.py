"""Fault tolerance with torch_npu_sim.comms: three workers form a communicator, one is
SIGKILLed, and the two survivors plus a replacement process reconfigure and carry on,
without restarting the survivors.

    python examples/comms_reconfigure.py

This process hosts the store (so it outlives any worker) and plays the supervisor.
"""
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

WORKERS = 3


def exchange_handles(store, comm, epoch, count):
    """Everyone publishes its init handle; all return once `count` are in."""
    slot = store.add(f"epoch{epoch}/count", 1) - 1
    store.set(f"epoch{epoch}/{slot}", comm.get_init_handle())
    keys = [f"epoch{epoch}/{i}" for i in range(count)]
    store.wait(keys, timedelta(seconds=60))
    return {store.get(k).decode() for k in keys}


def worker(port, replacement):
    from torch_npu_sim import comms

    store = dist.TCPStore("127.0.0.1", port, is_master=False, wait_for_workers=False)
    comm = comms.new_comm("npusim", "npusim", name="ft", store=store, enable_reconfigure=True,
                          timeout=timedelta(seconds=30))
    who = f"[pid {os.getpid()}{' replacement' if replacement else ''}]"
    if not replacement:
        comm.reconfigure(0, exchange_handles(store, comm, 0, WORKERS))
        print(f"{who} rank {comm.get_rank()} of {comm.get_size()}", flush=True)
        t = torch.ones(4, device=comm.get_device())
        store.set(f"ready/{comm.get_rank()}", str(os.getpid()))
        try:
            while True:
                comm.all_reduce(t.fill_(1), comms.ReduceOp.SUM, async_op=True).wait()
        except RuntimeError as e:
            print(f"{who} collective failed: {str(e).splitlines()[0][:100]}", flush=True)
        comm.abort()
    comm.reconfigure(1, exchange_handles(store, comm, 1, WORKERS))
    t = torch.full((4,), float(comm.get_rank() + 1), device=comm.get_device())
    comm.all_reduce(t, comms.ReduceOp.SUM, async_op=False)
    print(f"{who} reconfigured: rank {comm.get_rank()} of {comm.get_size()}, all_reduce sum = {t[0].item():.0f}",
          flush=True)
    comm.finalize()


def main():
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    spawn = lambda *extra: subprocess.Popen([sys.executable, __file__, "--worker", str(store.port), *extra])
    procs = [spawn() for _ in range(WORKERS)]
    store.wait([f"ready/{r}" for r in range(WORKERS)], timedelta(seconds=120))
    victim = int(store.get("ready/0"))
    time.sleep(0.2)
    os.kill(victim, signal.SIGKILL)
    print(f"[supervisor] SIGKILLed rank 0 (pid {victim}); starting a replacement", flush=True)
    procs.append(spawn("--replacement"))
    codes = [p.wait(timeout=120) for p in procs]
    print(f"[supervisor] exit codes: {codes} (-9: the killed worker)")
    return 0 if sorted(codes) == [-9, 0, 0, 0] else 1


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker(int(sys.argv[2]), "--replacement" in sys.argv)
    else:
        sys.exit(main())
