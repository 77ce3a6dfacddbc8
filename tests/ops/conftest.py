import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import moduleinfo_totals  # noqa: E402
import opinfo_totals  # noqa: E402


def opinfo_summary(tr):
    s = opinfo_totals.SAMPLES
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


def moduleinfo_summary(tr):
    t = moduleinfo_totals
    s = t.SAMPLES
    tr.write_sep("=", "ModuleInfo conformance on npusim")
    modules = sum(t.PER_MODULE.values())
    checked = sum(n * count for n, count in t.PER_MODULE.items())
    tr.write_line(f"modules: {modules} ({', '.join(f'{k} {v}' for k, v in t.MODULES.most_common())}), "
                  f"in {t.SECONDS[0]:.1f} s")
    tr.write_line(f"samples per module: {checked / max(modules, 1):.1f} on average (float32 train/eval, other dtypes); "
                  "modules by sample count: " + ", ".join(f"{n}: {c}" for n, c in sorted(t.PER_MODULE.items())))
    tr.write_line(f"samples: passed {s['passed']}, failed {s['failed']}, skipped {s['skipped']}")
    for reason, count in t.SKIP_REASONS.most_common():
        tr.write_line(f"  skipped {count:5d}: {reason}")
    for note, count in t.NOTES.most_common():
        tr.write_line(f"  note    {count:5d}: {note}")


def pytest_terminal_summary(terminalreporter):
    if opinfo_totals.SAMPLES:
        opinfo_summary(terminalreporter)
    if moduleinfo_totals.SAMPLES:
        moduleinfo_summary(terminalreporter)
