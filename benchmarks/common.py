"""Interleaved timing helpers: A and B alternate round by round, medians are reported."""
import statistics
import time
from typing import Callable


def per_call_seconds(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def interleaved_samples(cases: dict, calls: int, rounds: int = 7) -> dict:
    """Seconds per call for each case and round, the cases run in turn each round."""
    samples = {name: [] for name in cases}
    for fn in cases.values():
        per_call_seconds(fn, max(1, calls // 10))  # warm-up
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name].append(per_call_seconds(fn, calls))
    return samples


def interleaved(cases: dict, calls: int, rounds: int = 7) -> dict:
    """Median seconds per call for each case, the cases run in turn each round."""
    return medians(interleaved_samples(cases, calls, rounds))


def medians(samples: dict) -> dict:
    return {name: statistics.median(values) for name, values in samples.items()}


def paired_ratio(samples: dict, case: str, baseline: str) -> float:
    """Median over rounds of case/baseline within a round: neighbours in time share the
    machine's load, so the ratio does not drift with it as a ratio of medians does."""
    return statistics.median(a / b for a, b in zip(samples[case], samples[baseline]))


def print_table(title: str, rows: list, headers: list) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
