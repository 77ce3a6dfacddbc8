"""Randomized differential testing of the npusim collectives.

Hypothesis generates collective *programs* (programs.py, strategies.py); long-lived rank
processes, one pool per world size (pool.py), run each program on gloo, on the streamed
npusim group and on the program's npusim group, and compare (oracle.py). A failing
program is shrunk by hypothesis and printed in a form that replays it exactly:

    python -m torch_npu_sim.testing.fuzz --minutes 10 [--seed S] [--worlds 2,3,4,8]
    python -m torch_npu_sim.testing.fuzz --replay '{"world":2,"group":"in_place","calls":[...]}'
"""
import argparse
import sys
import time

from .pool import Pools
from .programs import Program


class ProgramFailed(AssertionError):
    def __init__(self, program: Program, problems: list):
        self.program, self.problems = program, problems
        super().__init__(failure_report(program, problems))


def failure_report(program: Program, problems: list, limit: int = 12) -> str:
    shown = problems[:limit] + ([f"... and {len(problems) - limit} more"] if len(problems) > limit else [])
    return ("collective program failed: " + program.describe() + "\n"
            + "\n".join("  " + p.replace("\n", "\n    ") for p in shown)
            + f"\nreplay: python -m torch_npu_sim.testing.fuzz --replay '{program.to_json()}'")


def check_program(pools: Pools, program: Program):
    """Runs `program`; raises ProgramFailed naming it and what went wrong; returns the
    pool's Outcome (seconds, whether some call read peers' memory in place)."""
    program.validate()
    outcome = pools.run(program)
    if not outcome.ok:
        raise ProgramFailed(program, outcome.problems)
    return outcome


def fuzz(minutes: float, seed: int, worlds, max_calls: int = 3, max_failures: int = 5, out=sys.stdout) -> int:
    """Runs batches of hypothesis examples until `minutes` pass; prints every distinct
    shrunk failure. Returns the number of failures."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    from .strategies import programs

    deadline = time.monotonic() + minutes * 60
    ran, in_place, failures, seen = [0], [0], [], set()
    pools = Pools()

    def one_batch(batch_seed: int, world: int, examples: int) -> None:
        # one world size a batch: one pool alive at a time, started once per batch
        @hypothesis_seed(batch_seed)
        @settings(max_examples=examples, database=None, deadline=None, derandomize=False,
                  phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck),
                  print_blob=False, report_multiple_bugs=False)
        @given(programs(worlds=(world,), max_calls=max_calls))
        def property_(program):
            ran[0] += 1
            in_place[0] += check_program(pools, program).in_place

        property_()

    try:
        batch, next_progress = 0, time.monotonic() + 30
        while time.monotonic() < deadline and len(failures) < max_failures:
            batch += 1
            try:
                world = worlds[batch % len(worlds)]
                one_batch(seed * 100_003 + batch, world, examples=40 if world < 8 else 10)
            except Exception as raised:  # hypothesis may wrap it (a flaky failure)
                e = _program_failure(raised)
                if e is None:
                    raise
                key = e.program.to_json()
                if key not in seen:
                    seen.add(key)
                    failures.append(e)
                    print(f"\n=== failure {len(failures)} (after {ran[0]} programs) ===\n{e}", file=out, flush=True)
            if time.monotonic() >= next_progress:
                next_progress = time.monotonic() + 30
                elapsed = minutes * 60 - (deadline - time.monotonic())
                print(f"[{elapsed / 60:.1f} min] {ran[0]} programs run, {len(failures)} failing", file=out, flush=True)
    finally:
        pools.close()
    rate = ran[0] / max(1e-9, (minutes * 60 - max(0.0, deadline - time.monotonic())) / 60)
    print(f"\n{ran[0]} programs run ({rate:.0f} a minute; {in_place[0]} passing ones read peers' memory in place), "
          f"{len(failures)} distinct failing program(s)", file=out)
    for k, e in enumerate(failures, 1):
        print(f"\n--- failing program {k}:\n{e}", file=out)
    return len(failures)


def _program_failure(e: BaseException) -> "ProgramFailed | None":
    if isinstance(e, ProgramFailed):
        return e
    for inner in getattr(e, "exceptions", ()):
        found = _program_failure(inner)
        if found is not None:
            return found
    return None


def replay(text: str, out=sys.stdout) -> int:
    program = Program.from_json(text)
    with Pools() as pools:
        try:
            outcome = check_program(pools, program)
        except ProgramFailed as e:
            print(e, file=out)
            return 1
    how = "in place and streamed" if outcome.in_place else "streamed only"
    print(f"passed in {outcome.seconds:.1f} s ({how}): {program.describe()}", file=out)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="how long to fuzz (default 5)")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100_000, help="hypothesis seed (default: clock)")
    ap.add_argument("--worlds", default="2,3,4,8", help="world sizes to draw from, 2-8 (default 2,3,4,8)")
    ap.add_argument("--max-calls", type=int, default=3, help="collective calls per program (default 3)")
    ap.add_argument("--max-failures", type=int, default=5, help="stop after this many distinct failures")
    ap.add_argument("--replay", metavar="JSON", help="run one program (as a failure report prints it) and exit")
    args = ap.parse_args(argv)
    if args.replay:
        return replay(args.replay)
    worlds = tuple(int(w) for w in args.worlds.split(","))
    assert all(2 <= w <= 8 for w in worlds), "world sizes are 2 to 8"
    print(f"fuzzing for {args.minutes} min, seed {args.seed}, worlds {worlds}", flush=True)
    return 1 if fuzz(args.minutes, args.seed, worlds, args.max_calls, args.max_failures) else 0


if __name__ == "__main__":
    sys.exit(main())
