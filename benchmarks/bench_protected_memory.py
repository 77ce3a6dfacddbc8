"""Cost of protected device memory (NPUSIM_PROTECT_MEMORY=1): per-op time in the mode over
the same program without it, measured in child processes of this run (the mode is read once
per process), with few and with 100 live allocator segments (each mapping is re-protected
when the last open scope closes; adjacent ones share one mprotect)."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import interleaved, print_table  # noqa: E402

CASES = ("add 1 element", "mm 256x256", "1 MiB to host")


def measure(segments: int) -> dict:
    import torch

    keep = [torch.ones(2**18 + 1024 * i, device="npusim") for i in range(segments)]  # populated segments
    a, b = torch.ones(1, device="npusim"), torch.ones(1, device="npusim")
    m = torch.randn(256, 256, device="npusim")
    big = torch.ones(2**18, device="npusim")
    cases = {"add 1 element": lambda: a + b, "mm 256x256": lambda: m @ m, "1 MiB to host": lambda: big.cpu()}
    result = interleaved(cases, calls=300)
    del keep
    return result


def main() -> None:
    rows = []
    for segments in (0, 100):
        times = {}
        for protect in (False, True):
            env = dict(os.environ)
            env.pop("NPUSIM_PROTECT_MEMORY", None)
            if protect:
                env["NPUSIM_PROTECT_MEMORY"] = "1"
            out = subprocess.run([sys.executable, __file__, "--child", str(segments)], env=env,
                                 capture_output=True, text=True, check=True, timeout=600)
            times[protect] = json.loads(out.stdout.strip().splitlines()[-1])
        for case in CASES:
            off, on = times[False][case], times[True][case]
            rows.append((case, segments, f"{off * 1e6:.1f}", f"{on * 1e6:.1f}", f"{on / off:.2f}x"))
    print_table("protected memory: per-op time, in the mode vs without (same run)", rows,
                ["op", "live segments", "off (us)", "on (us)", "on/off"])


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(measure(int(sys.argv[2]))))
    else:
        main()
