"""Device foundation benchmarks, as ratios against the CPU measured in the same run
(interleaved rounds, medians): torch.empty(1), 64 MiB host<->device copies against the
host's own copy_ and the machine's memcpy bandwidth, event record + synchronize."""
import ctypes

import torch

from common import interleaved, interleaved_samples, medians, paired_ratio, print_table

MiB = 2**20


def empty_rows() -> list:
    cpu, npu = torch.device("cpu"), torch.device("npusim", 0)
    samples = interleaved_samples({
        "cpu": lambda: torch.empty(1),
        "cpu, device='cpu'": lambda: torch.empty(1, device="cpu"),
        "npusim": lambda: torch.empty(1, device="npusim"),
        "cpu, device object": lambda: torch.empty(1, device=cpu),
        "npusim, device object": lambda: torch.empty(1, device=npu),
    }, calls=20000, rounds=15)
    t = medians(samples)
    us = lambda name: f"{t[name] * 1e6:.2f} us"
    ratio = lambda a, b: f"{paired_ratio(samples, a, b):.2f}x time"  # median of per-round ratios
    return [
        ["torch.empty(1) (npusim: device='npusim')", us("cpu"), us("npusim"), ratio("npusim", "cpu"), "<= 1.2x"],
        ["  same call, both device='...'", us("cpu, device='cpu'"), us("npusim"),
         ratio("npusim", "cpu, device='cpu'"), "<= 1.2x"],
        ["  same call, both torch.device", us("cpu, device object"), us("npusim, device object"),
         ratio("npusim, device object", "cpu, device object"), "<= 1.2x"],
        ["  (the device='cpu' argument alone)", us("cpu"), "-", ratio("cpu, device='cpu'", "cpu"), "-"],
    ]


def copy_rows() -> list:
    size = 64 * MiB
    host_src, host_dst = torch.randn(size // 4), torch.empty(size // 4)
    dev, dev2 = torch.empty(size // 4, device="npusim"), torch.empty(size // 4, device="npusim")
    dst_ptr, src_ptr = host_dst.data_ptr(), host_src.data_ptr()
    samples = interleaved_samples({
        "host copy_": lambda: host_dst.copy_(host_src),
        "host copy_ again": lambda: host_dst.copy_(host_src),  # the noise floor: the baseline against itself
        "memcpy": lambda: ctypes.memmove(dst_ptr, src_ptr, size),  # one thread: glibc's memcpy
        "h2d": lambda: dev.copy_(host_src),
        "d2h": lambda: host_dst.copy_(dev),
        "d2d": lambda: dev2.copy_(dev),
    }, calls=10, rounds=15)
    t = medians(samples)
    gbps = lambda name: f"{size / t[name] / 1e9:.2f} GB/s"
    # the share is the median of per-round ratios: each copy against the host copy_ next to it
    share = lambda name: f"{100 / paired_ratio(samples, name, 'host copy_'):.0f}% of host copy_"
    host = gbps("host copy_")
    return [
        ["64 MiB host->device", host, gbps("h2d"), share("h2d"), ">= 95%"],
        ["64 MiB device->host", host, gbps("d2h"), share("d2h"), ">= 95%"],
        ["64 MiB device->device", host, gbps("d2d"), share("d2d"), "-"],
        ["  (noise: host copy_ against itself)", host, "-", share("host copy_ again"), "-"],
        [f"  machine: memcpy on 1 thread / host copy_ on {torch.get_num_threads()}", gbps("memcpy"), "-",
         f"{paired_ratio(samples, 'memcpy', 'host copy_'):.2f}x the time of host copy_", "-"],
    ]


def event_rows() -> list:
    event = torch.npusim.Event()

    def record_sync():
        event.record()
        event.synchronize()

    t = interleaved({"event": record_sync, "empty": lambda: torch.empty(1)}, calls=20000)
    return [["event record + synchronize", "-", f"{t['event'] * 1e6:.2f} us",
             f"{t['event'] / t['empty']:.2f}x a CPU torch.empty(1)", "-"]]


def main() -> None:
    rows = empty_rows() + copy_rows() + event_rows()
    print_table("torch_npu_sim device benchmarks (medians of interleaved rounds)", rows,
                ["what", "cpu / host", "npusim", "ratio", "goal"])


if __name__ == "__main__":
    main()
