"""torchft on npusim: replica groups train through a SIGKILLed group, and it heals and rejoins.

A torchft Lighthouse and 3 DDP replica groups (or, with --mode hsdp, 2 groups of 2 ranks
running FSDP2 inside, torchft across) train a small model on npusim devices, using
``ProcessGroupNpuSim`` as torchft's process group. One group is SIGKILLed mid-run and
restarted at once; the others keep committing steps without it, the restarted group heals
from a peer (weights, optimizer state, step) and joins the quorum again. Printed: the
timeline, the time from the kill to each milestone, whether all replicas ended with the
same weights, and the loss curve beside the undisturbed run's.

    bash scripts/install_torchft.sh          # the `torchft` extra
    python examples/torchft_replicas.py [--mode hsdp] [--kill-at-step 5]
"""
import argparse

from torch_npu_sim.integrations.torchft import replica_harness, replica_worker


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("ddp", "hsdp"), default="ddp")
    p.add_argument("--kill-at-step", type=int, default=5)
    p.add_argument("--steps-after-rejoin", type=int, default=5)
    args = p.parse_args()
    groups, group_size, min_replicas = (3, 1, 2) if args.mode == "ddp" else (2, 2, 1)
    killed = 1

    print("timeline (seconds since start):")
    run = replica_harness.run(mode=args.mode, groups=groups, group_size=group_size, min_replicas=min_replicas,
                              kill_replica=killed, kill_at_step=args.kill_at_step,
                              steps_after_rejoin=args.steps_after_rejoin, step_sleep=0.1, timeout_s=5,
                              deadline_s=400, log=print)

    print("\nfrom the SIGKILL to:")
    rec = run.recovery(killed)
    for key, text in (("survivors_commit_s", "the survivors' next committed step"),
                      ("restarted_ready_s", "the restarted group's manager up (process start + imports)"),
                      ("restarted_first_step_s", f"its first step, healed to step {rec['healed_to_step']}"),
                      ("training_again_s", "its first committed step: training again")):
        print(f"  {text:62s} {rec[key]:.3f} s")

    final = run.final_params()
    same = all(final[(r, g)] == final[(0, g)] for r in range(groups) for g in range(group_size))
    print(f"\nall {groups} replica groups stopped at step {run.stop_step} with identical weights: {same}")

    curve = run.loss_curve(0)
    reference = replica_worker.reference_curve(groups, run.stop_step, mode=args.mode, group_size=group_size)
    print("\nstep  eval loss (this run)  undisturbed run  relative difference")
    for step in sorted(curve):
        diff = abs(curve[step] - reference[step]) / reference[step]
        print(f"{step:4d}  {curve[step]:19.5f}  {reference[step]:15.5f}  {diff:8.2%}")


if __name__ == "__main__":
    main()
