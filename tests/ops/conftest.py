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
    tr.write_line(f"ops: {dict(opinfo_totals.OPS)}")
    tr.write_line(f"samples: passed {s['passed']}, failed {s['failed']}, skipped {s['skipped']}")
    for reason, count in opinfo_totals.SKIP_REASONS.most_common():
        tr.write_line(f"  skipped {count:5d}: {reason}")
