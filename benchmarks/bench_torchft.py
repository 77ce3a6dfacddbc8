"""torchft recovery time on npusim: a replica group SIGKILLed mid-run until it trains again.

3 DDP replica groups (torchft Manager + Lighthouse, ``ProcessGroupNpuSim``) train a small
model; group 1 is SIGKILLed after it commits step --kill-at-step and restarted at once.
Reported per run and as medians, in seconds from the kill, and as ratios against the
median time of an undisturbed step measured in the same run (before the kill):

- survivors: the other groups' next committed step (they drop the dead group from the quorum);
- ready:     the restarted group's Manager is up (process start, imports: a cold start);
- healed:    its first step, after fetching weights, optimizer state and step from a peer;
- training:  its first committed step with the others (the recovery time).

    python benchmarks/bench_torchft.py [--runs 3]
"""
import argparse
import statistics
import sys

from common import print_table

from torch_npu_sim.integrations.torchft import replica_harness


def step_time(run: replica_harness.Run) -> float:
    """Median interval between replica 0's committed steps before the kill."""
    times = [e["t"] for e in run.of("step", 0, 0) if e["committed"] and e["t"] < run.kill_time]
    return statistics.median(b - a for a, b in zip(times, times[1:]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--kill-at-step", type=int, default=5)
    args = p.parse_args()
    if args.runs < 1:
        sys.exit("--runs must be at least 1")
    keys = ("survivors_commit_s", "restarted_ready_s", "restarted_first_step_s", "training_again_s")
    rows, samples = [], {k: [] for k in keys + ("step_s",)}
    for i in range(args.runs):
        run = replica_harness.run(mode="ddp", groups=3, group_size=1, min_replicas=2, kill_replica=1,
                                  kill_at_step=args.kill_at_step, steps_after_rejoin=3, step_sleep=0.0,
                                  timeout_s=5, deadline_s=300)
        rec = run.recovery(1)
        rec["step_s"] = step_time(run)
        for k in samples:
            samples[k].append(rec[k])
        rows.append([i + 1, f"{rec['step_s'] * 1e3:.1f}"] + [f"{rec[k]:.3f}" for k in keys])
    print_table("torchft on npusim: seconds from the SIGKILL of one of 3 DDP replica groups",
                rows, ["run", "step ms", "survivors commit", "restarted ready", "healed (first step)",
                       "training again"])
    step = statistics.median(samples["step_s"])
    medians = {k: statistics.median(samples[k]) for k in keys}
    print_table(f"medians of {args.runs} runs (ratio: over the median undisturbed step, {step * 1e3:.1f} ms)",
                [[k, f"{medians[k]:.3f}", f"{medians[k] / step:.0f}x"] for k in keys],
                ["from the kill to", "seconds", "steps' time"])
    heal = statistics.median(b - a for a, b in zip(samples["restarted_ready_s"], samples["training_again_s"]))
    print(f"\nthe restarted group's heal and rejoin, after its cold start: {heal:.3f} s (median)")


if __name__ == "__main__":
    main()
