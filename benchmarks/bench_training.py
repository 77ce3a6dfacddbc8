"""Training step time: FSDP2 (and FSDP2 x TP) on npusim against the CPU with gloo.

    python benchmarks/bench_training.py [--quick] [--tp]

Each rank is a real process with one process group "cpu:gloo,npusim:npusim" and two
copies of the same small transformer from the same seed: one sharded over an npusim
mesh (npusim collectives), one over a CPU mesh (gloo). Their training steps (forward,
backward, AdamW) alternate round by round in the same processes, so both see the same
machine load; medians are reported with tokens/s and the npusim/cpu ratio (goal <= 1.0x).
It also checks npusim's memory against the sharding: after a step each rank holds its
shard of the fp32 parameters and AdamW's two moments (gradients are freed by
zero_grad(set_to_none=True)), 12 bytes per local parameter (12 P / N for FSDP2 on N ranks; with TP the blocks are split over all ranks and
the embedding and head over the data-parallel ones); the peak adds the activations and
one layer gathered at a time.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table  # noqa: E402

DIM, LAYERS, HEADS, VOCAB = 256, 4, 8, 2048
GOAL = 1.0


def build(device, tp_mesh=None):
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.RMSNorm(DIM), nn.RMSNorm(DIM)
            self.wq, self.wk, self.wv, self.wo = (nn.Linear(DIM, DIM, bias=False) for _ in range(4))
            self.w1, self.w2 = nn.Linear(DIM, 4 * DIM, bias=False), nn.Linear(4 * DIM, DIM, bias=False)

        def forward(self, x):
            b, s, _ = x.shape
            h = self.norm1(x)
            q, k, v = (w(h).view(b, s, -1, DIM // HEADS).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
            a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.wo(a.transpose(1, 2).reshape(b, s, -1))
            return x + self.w2(nn.functional.gelu(self.w1(self.norm2(x))))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(VOCAB, DIM), *(Block() for _ in range(LAYERS)),
                          nn.RMSNorm(DIM), nn.Linear(DIM, VOCAB, bias=False))
    return model.to(device)


def rank_main(rank, world, port, tp, rounds, steps, batch, seq):
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group("cpu:gloo,npusim:npusim", rank=rank, world_size=world)
    torch.npusim.set_device(rank)
    shape, names = ((world // 2, 2), ("dp", "tp")) if tp else ((world,), ("dp",))
    runs = {}
    for device in ("npusim", "cpu"):
        mesh = init_device_mesh(device, shape, mesh_dim_names=names)
        model = build(torch.device(device, rank) if device == "npusim" else device)
        params = sum(p.numel() for p in model.parameters())
        block_params = sum(p.numel() for p in model[1:1 + LAYERS].parameters())
        for block in model[1:1 + LAYERS]:
            if tp:
                parallelize_module(block, mesh["tp"], {
                    "wq": ColwiseParallel(), "wk": ColwiseParallel(), "wv": ColwiseParallel(),
                    "wo": RowwiseParallel(), "w1": ColwiseParallel(), "w2": RowwiseParallel()})
            fully_shard(block, mesh=mesh["dp"])
        fully_shard(model, mesh=mesh["dp"])
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
        gen = torch.Generator().manual_seed(rank if not tp else rank // 2)
        tokens = torch.randint(0, VOCAB, (batch, seq + 1), generator=gen).to(mesh.device_type)
        runs[device] = (model, opt, tokens)

    def step(device):
        model, opt, tokens = runs[device]
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()  # waits for the step, as a training loop logging its loss does

    losses = {d: [step(d) for _ in range(2)] for d in runs}  # warm-up (allocates AdamW state)
    torch.npusim.reset_peak_memory_stats(rank)
    samples = {d: [] for d in runs}
    for _ in range(rounds):
        for device in runs:
            dist.barrier()
            start = time.perf_counter()
            for _ in range(steps):
                losses[device].append(step(device))
            samples[device].append((time.perf_counter() - start) / steps)
    result = {d: statistics.median(v) for d, v in samples.items()}
    # blocks are split over every rank (dp x tp), the embedding, final norm and head over dp
    dp = world // 2 if tp else world
    result.update(params=params, expected=12 * (block_params / world + (params - block_params) / dp), steady=torch.npusim.memory_allocated(rank),
                  peak=torch.npusim.max_memory_allocated(rank),
                  loss_npusim=losses["npusim"][-1], loss_cpu=losses["cpu"][-1])
    if rank == 0:
        print("RESULT " + json.dumps(result), flush=True)
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world, tp, args):
    port = free_port()
    cmd = [sys.executable, __file__, "--rank-main", str(world), str(port), str(int(tp)),
           str(args.rounds), str(args.steps), str(args.batch), str(args.seq)]
    procs = [subprocess.Popen(cmd + [str(r)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in range(world)]
    outs = [p.communicate(timeout=1800) for p in procs]
    for p, (out, err) in zip(procs, outs):
        if p.returncode:
            raise SystemExit(f"rank failed:\n{err[-4000:]}")
    line = next(l for l in outs[0][0].splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2 steps")
    parser.add_argument("--tp", action="store_true", help="also FSDP2 x TP 2x2 on 4 ranks")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    args = parser.parse_args()
    args.rounds, args.steps = (3, 2) if args.quick else (7, 3)
    configs = [("FSDP2", 2, False)] + ([("FSDP2 x TP 2x2", 4, True)] if args.tp else [])
    rows, mem_rows = [], []
    for name, world, tp in configs:
        r = launch(world, tp, args)
        dp = world // 2 if tp else world
        tokens = args.batch * args.seq * dp  # per step, all data-parallel ranks
        ratio = r["npusim"] / r["cpu"]
        rows.append([name, world, f"{r['npusim'] * 1e3:.1f}", f"{r['cpu'] * 1e3:.1f}",
                     f"{tokens / r['npusim']:.0f}", f"{tokens / r['cpu']:.0f}",
                     f"{ratio:.2f}x", f"<= {GOAL:.1f}x {'ok' if ratio <= GOAL else 'MISSED'}",
                     f"{r['loss_npusim']:.4f} / {r['loss_cpu']:.4f}"])
        expected = r["expected"]  # fp32 shards of params, exp_avg, exp_avg_sq
        mem_rows.append([name, f"{r['params']:,}", f"{expected / 2**20:.2f}", f"{r['steady'] / 2**20:.2f}",
                         f"{r['steady'] / expected:.2f}", f"{r['peak'] / 2**20:.2f}"])
    print(f"\nmodel: {LAYERS} blocks, dim {DIM}, vocab {VOCAB}; batch {args.batch} x seq {args.seq} per rank; "
          f"median of {args.rounds} rounds x {args.steps} steps, npusim and cpu alternating")
    print_table("Step time (npusim collectives vs gloo, same processes)", rows,
                ["config", "ranks", "npusim ms", "cpu ms", "npusim tok/s", "cpu tok/s", "npusim/cpu",
                 "goal", "last loss npusim / cpu"])
    print_table("npusim memory per rank (MiB) vs the sharding's 12 bytes per local parameter", mem_rows,
                ["config", "params P", "expected", "after step", "after/expected", "peak (+ grads, activations, gathered layers)"])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--rank-main":
        world, port, tp, rounds, steps, batch, seq, rank = map(int, sys.argv[2:10])
        rank_main(rank, world, port, bool(tp), rounds, steps, batch, seq)
    else:
        main()
