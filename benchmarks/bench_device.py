"""Device foundation benchmarks, as ratios against the CPU measured in the same run:
torch.empty(1), 64 MiB host<->device copies, event record + synchronize."""
import torch

from common import interleaved, print_table

MiB = 2**20


def main() -> None:
    rows = []
    t = interleaved({"cpu": lambda: torch.empty(1), "npusim": lambda: torch.empty(1, device="npusim")}, calls=20000)
    rows.append(["torch.empty(1)", f"{t['cpu'] * 1e6:.2f} us", f"{t['npusim'] * 1e6:.2f} us",
                 f"{t['npusim'] / t['cpu']:.2f}x time", "<= 1.5x"])

    n = 64 * MiB // 4
    host_src, host_dst = torch.randn(n), torch.empty(n)
    dev = torch.empty(n, device="npusim")
    t = interleaved({
        "host copy_": lambda: host_dst.copy_(host_src),
        "h2d": lambda: dev.copy_(host_src),
        "d2h": lambda: host_dst.copy_(dev),
    }, calls=10)
    gbps = lambda s: 64 * MiB / s / 1e9
    rows.append(["64 MiB host->device", f"{gbps(t['host copy_']):.2f} GB/s", f"{gbps(t['h2d']):.2f} GB/s",
                 f"{t['host copy_'] / t['h2d'] * 100:.0f}% of host copy_", ">= 85%"])
    rows.append(["64 MiB device->host", f"{gbps(t['host copy_']):.2f} GB/s", f"{gbps(t['d2h']):.2f} GB/s",
                 f"{t['host copy_'] / t['d2h'] * 100:.0f}% of host copy_", ">= 85%"])

    event = torch.npusim.Event()

    def record_sync():
        event.record()
        event.synchronize()

    t = interleaved({"event": record_sync, "empty": lambda: torch.empty(1)}, calls=20000)
    rows.append(["event record + synchronize", "-", f"{t['event'] * 1e6:.2f} us",
                 f"{t['event'] / t['empty']:.2f}x a CPU torch.empty(1)", "-"])
    print_table("torch_npu_sim device benchmarks (medians of 7 interleaved rounds)", rows,
                ["what", "cpu", "npusim", "ratio", "goal"])


if __name__ == "__main__":
    main()
