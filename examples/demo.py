"""A tour of the simulated NPU: devices, memory, streams and events, and a small model
trained on npusim, checked against the same training run on the CPU."""
import os
import subprocess
import sys
import time

import torch


def banner(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 66 - len(title)))


def main() -> None:
    banner("Devices")
    print(f"torch {torch.__version__}; accelerator: {torch.accelerator.current_accelerator()}")
    for i in range(torch.npusim.device_count()):
        p = torch.npusim.get_device_properties(i)
        free, total = torch.npusim.mem_get_info(i)
        print(f"  npusim:{i}  {p.name}  {total / 2**30:.0f} GiB capacity, {free / 2**30:.2f} GiB free")

    banner("Tensors live in simulated device memory")
    x = torch.arange(12, dtype=torch.float32, device="npusim:3").reshape(3, 4)
    print(f"x = arange(12).reshape(3, 4) on {x.device}:\n{x}")
    print(f"x @ x.T on {(x @ x.T).device} ->\n{(x @ x.T).cpu()}")
    before = torch.npusim.memory_allocated(3)
    big = torch.empty(256, 1024, 1024, dtype=torch.uint8, device="npusim:3")
    print(f"allocating 256 MiB on npusim:3: memory_allocated {before} -> {torch.npusim.memory_allocated(3)} bytes")
    del big
    print(f"freed: memory_allocated {torch.npusim.memory_allocated(3)}, "
          f"still reserved by the cache: {torch.npusim.memory_reserved(3) / 2**20:.0f} MiB")
    try:
        torch.empty(20 * 2**30, dtype=torch.uint8, device="npusim:3")
    except torch.OutOfMemoryError as e:
        print(f"asking for 20 GiB raises torch.OutOfMemoryError:\n  {str(e).splitlines()[0]}")

    banner("Streams and events")
    side = torch.npusim.Stream(priority=-1)
    start, end = torch.npusim.Event(enable_timing=True), torch.npusim.Event(enable_timing=True)
    a = torch.randn(512, 512, device="npusim")
    with torch.npusim.stream(side):
        start.record()
        for _ in range(10):
            a = torch.tanh(a @ a / 512)
        end.record()
    torch.npusim.current_stream().wait_stream(side)
    end.synchronize()
    print(f"10 matmul+tanh steps on a high-priority stream took {start.elapsed_time(end):.2f} ms "
          f"(event timing); kernels launched on npusim:0 so far: {torch.npusim.launch_count(0)}")

    banner("Training a small MLP on npusim vs CPU")
    torch.manual_seed(0)
    data, target = torch.randn(256, 16), torch.randn(256, 1)
    model_cpu = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 1))
    model_npu = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 1))
    model_npu.load_state_dict(model_cpu.state_dict())
    model_npu.to("npusim")
    opt_cpu = torch.optim.Adam(model_cpu.parameters(), lr=1e-2)
    opt_npu = torch.optim.Adam(model_npu.parameters(), lr=1e-2)
    data_npu, target_npu = data.to("npusim"), target.to("npusim")
    t0 = time.perf_counter()
    for step in range(1, 51):
        for model, opt, xb, yb in ((model_cpu, opt_cpu, data, target), (model_npu, opt_npu, data_npu, target_npu)):
            opt.zero_grad()
            loss = (model(xb) - yb).pow(2).mean()
            loss.backward()
            opt.step()
            if model is model_cpu:
                loss_cpu = loss.item()
            else:
                loss_npu = loss.item()
        if step in (1, 10, 25, 50):
            print(f"  step {step:3d}: loss on cpu {loss_cpu:.6f}   loss on npusim {loss_npu:.6f}")
    same = all(torch.equal(p.cpu(), q.detach().cpu()) for p, q in zip(model_cpu.parameters(), model_npu.parameters()))
    print(f"weights after 50 steps identical to the CPU run: {same}  ({time.perf_counter() - t0:.2f} s for both)")
    print(f"peak memory on npusim:0 during training: {torch.npusim.max_memory_allocated(0) / 2**20:.2f} MiB")

    banner("Graphs: capture one training step, replay it (torch.npusim.NPUGraph)")
    del loss  # the last eager step's autograd graph
    models = [torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 1)).to("npusim")
              for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    graph_opt, eager_opt = (torch.optim.SGD(m.parameters(), lr=1e-2, momentum=0.9) for m in models)
    for model, opt in zip(models, (graph_opt, eager_opt)):  # warm-up, as for CUDA graphs: the momentum exists
        (model(data_npu) - target_npu).pow(2).mean().backward()  # before capture (else its zero-fill is captured)
        opt.step()
        opt.zero_grad(set_to_none=True)
    static_x, static_y = data_npu.clone(), target_npu.clone()
    graph = torch.npusim.NPUGraph()
    with torch.npusim.graph(graph):  # recorded, not run
        (models[0](static_x) - static_y).pow(2).mean().backward()
        graph_opt.step()
    t0 = time.perf_counter()
    for _ in range(20):
        graph.replay()  # one launch: every kernel of forward, backward and SGD, on the same memory
    replay_s = (time.perf_counter() - t0) / 20
    t0 = time.perf_counter()
    for _ in range(20):
        eager_opt.zero_grad(set_to_none=True)
        (models[1](data_npu) - target_npu).pow(2).mean().backward()
        eager_opt.step()
    eager_s = (time.perf_counter() - t0) / 20
    same = all(torch.equal(p.detach().cpu(), q.detach().cpu())
               for p, q in zip(models[0].parameters(), models[1].parameters()))
    print(f"  20 replays vs 20 eager steps: weights identical: {same}; {replay_s * 1e3:.2f} ms per replayed step, "
          f"{eager_s * 1e3:.2f} ms per eager step ({eager_s / replay_s:.1f}x)")

    banner("Simulating a chip: the same training step, timed on two real chips' figures")
    from torch_npu_sim import simulation as sim
    for chip in ("a100-sxm4-80gb", "edge-npu"):
        spec = sim.set_chip(chip)
        sim.enable()
        sim.reset()  # every stream's simulated clock to 0
        opt_npu.zero_grad()
        (model_npu(data_npu) - target_npu).pow(2).mean().backward()
        opt_npu.step()
        torch.npusim.synchronize()
        stats = sim.breakdown()
        print(f"  {spec.name}: predicted step {sim.sim_time_ns() / 1e3:.1f} us over {sum(s.count for s in stats)} "
              f"launches; largest: " + ", ".join(f"{s.name} {s.sim_ns / 1e3:.1f} us" for s in stats[:3]))
    sim.disable()
    sim.set_chip("npusim-1")
    print("  (roofline cost per launch: max(FLOPs/peak, bytes/bandwidth) + launch latency; "
          "see examples/simulate_chip.py for a transformer step, a per-op table and a Chrome trace)")

    banner("4 processes, one npusim device each: DDP over the npusim collective backend")
    world = 4
    queue = torch.multiprocessing.get_context("spawn").SimpleQueue()
    port = _free_port()
    torch.multiprocessing.spawn(_ddp_worker, args=(world, port, queue), nprocs=world)
    reports = sorted(queue.get() for _ in range(world))
    for rank, transport, losses, checksum in reports:
        print(f"  rank {rank} on npusim:{rank} ({transport}): losses {' '.join(f'{v:.4f}' for v in losses)}"
              f"   weights checksum {checksum:.6f}")
    print(f"replicas identical after training: {len({r[3] for r in reports}) == 1}")

    banner("A rank is SIGKILLed mid-training: the survivors carry on")
    example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "elastic_ddp.py")
    for mode in ("shrink", "survivor"):
        out = subprocess.run([sys.executable, example, "--mode", mode], capture_output=True, text=True, timeout=300)
        lines = out.stdout.splitlines()
        print(f"examples/elastic_ddp.py --mode {mode}:\n  {lines[0]}\n  rank 0's timeline, from the kill:")
        for line in [l for l in lines if l.strip().startswith(("+", "-")) and "ms" in l][:6]:
            print("  " + line)
        for line in [l for l in lines if l.startswith("survivors") or "first completed" in l]:
            print("  " + line)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, queue) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    device = torch.device("npusim", rank)
    dist.init_process_group("npusim", rank=rank, world_size=world, device_id=device)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(
        torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 1)).to(device))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(rank)  # each rank trains on its own shard
    x, y = torch.randn(64, 32, generator=gen).to(device), torch.randn(64, 1, generator=gen).to(device)
    losses = []
    for _ in range(20):
        loss = (model(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()  # gradients all-reduced across the 4 processes
        opt.step()
        losses.append(loss.item())
    checksum = sum(p.double().sum().item() for p in model.parameters())
    transport = dist.group.WORLD._get_backend(device).transport
    queue.put((rank, transport, losses[::5], checksum))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
