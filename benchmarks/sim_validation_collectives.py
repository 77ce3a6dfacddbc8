"""The collective model against published nccl-tests bus bandwidth (simulated time only).

    python benchmarks/sim_validation_collectives.py

all_reduce of 1 GiB and 8 GiB on 8 chips of one node, as the npusim backend runs it above
64 KiB (a reduce-scatter round then an all-gather round, every rank messaging every peer),
charged by the chip's link model (torch.ops.npusim_sim.direct_rounds_ns, what the backend
charges). Bus bandwidth as nccl-tests defines it: size / time * 2 (n - 1) / n.
"""
import torch

import torch_npu_sim  # noqa: F401  (the npusim_sim ops)
from torch_npu_sim import simulation as sim

# Alaya NeW, "NCCL-tests in practice" (docs.alayanew.com, tech blog, 2026-05-06): all_reduce_perf
# busbw at large sizes, 8 GPUs in one node: H100 SXM5 460-480 GB/s, A100 SXM4 230-250 GB/s
PUBLISHED_BUSBW = {"h100-sxm5-80gb": (460e9, 480e9), "a100-sxm4-80gb": (230e9, 250e9)}
WORLD = 8


def predicted_busbw(size: float) -> float:
    sent_per_round = (WORLD - 1) * size / WORLD
    seconds = torch.ops.npusim_sim.direct_rounds_ns(WORLD, sent_per_round, 2) / 1e9
    return size / seconds * 2 * (WORLD - 1) / WORLD


def main() -> None:
    previous = sim.get_chip()
    print(f"{'chip':<16} {'size':>6} {'predicted busbw':>16} {'published':>13} {'error':>7}")
    for chip, (low, high) in PUBLISHED_BUSBW.items():
        sim.set_chip(chip)
        for size in (1 << 30, 8 << 30):
            busbw = predicted_busbw(size)
            mid = (low + high) / 2
            print(f"{chip:<16} {size >> 30:>4}Gi {busbw / 1e9:>12.0f} GB/s {low / 1e9:>5.0f}-{high / 1e9:.0f} GB/s "
                  f"{100 * (busbw - mid) / mid:>+6.1f}%")
    sim.set_chip(previous)
    print("error against the middle of the published range; all_reduce above 1 GiB is bandwidth-bound here")


if __name__ == "__main__":
    main()
