import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import opinfo_totals  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    if not opinfo_totals.SAMPLES:
        return
    s = opinfo_totals.SAMPLES
    tr = terminalreporter
    tr.write_sep("=", "OpInfo conformance on npusim")
    ops = sum(opinfo_totals.PER_OP.values())
    checked = sum(n * count for n, count in opinfo_totals.PER_OP.items())
    tr.write_line(f"ops: {ops} ({', '.join(f'{k} {v}' for k, v in opinfo_totals.OPS.most_common())}), "
                  f"in {opinfo_totals.SECONDS[0]:.1f} s")
    tr.write_line(f"samples per op: {checked / max(ops, 1):.1f} on average (float32, in-place and other dtypes); "
                  "ops by sample count: " + ", ".join(f"{n}: {c}" for n, c in sorted(opinfo_totals.PER_OP.items())))
    tr.write_line(f"samples: passed {s['passed']}, failed {s['failed']}, skipped {s['skipped']}")
    for reason, count in opinfo_totals.SKIP_REASONS.most_common():
        tr.write_line(f"  skipped {count:5d}: {reason}")
