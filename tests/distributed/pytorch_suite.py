"""Runs PyTorch's own distributed test suite (``DistributedTest._DistTestBase``, what
test/distributed/test_distributed_spawn.py runs) against a backend, 2 ranks, and records
every test's outcome: passed / failed (with the error) / skipped (with the reason) /
timeout / crashed / not_run.

The tests run in ``jobs`` worker processes in parallel (pytorch_suite_worker.py: one
test at a time each, the ranks forked from a per-worker fork server); the driver hands out
tests one by one. Hard wall-clock limits: a test still running after ``test_timeout``
seconds has its worker's whole process group (worker, fork server, ranks; stopped ones
included) killed, is recorded as "timeout", and a fresh worker takes over; after
``total_timeout`` everything is killed and what has not run is recorded as "not_run".

Command line (the gloo run is for reference; CI runs npusim, see test_pytorch_suite.py):

    python tests/distributed/pytorch_suite.py --backend both          # gloo and npusim, side by side
    python tests/distributed/pytorch_suite.py --backend npusim --device npusim --jobs 3
    python tests/distributed/pytorch_suite.py --backend npusim -k test_all_gather_coalesced
    python tests/distributed/pytorch_suite.py --backend npusim --json out.json
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque

HERE = os.path.dirname(os.path.abspath(__file__))

# Tests measured to take several seconds: handed out first, so that the parallel workers
# finish together. (Order only; any test may be listed or not.)
SLOW_FIRST = [
    "test_monitored_barrier_gloo_rank_0_timeout",  # 10 s on npusim while it fails
    "test_ddp_logging_data_cpu",
    "test_monitored_barrier_gloo",
    "test_DistributedDataParallelCPU_grad_is_view",
    "test_accumulate_gradients_no_sync_allreduce_with_then_hook",
    "test_DistributedDataParallelCPU",
    "test_barrier_timeout_full_group",
    "test_barrier_timeout_global",
    "test_barrier",
    "test_barrier_full_group",
]

PASSED, FAILED, SKIPPED, TIMEOUT, CRASHED, NOT_RUN = "passed", "failed", "skipped", "timeout", "crashed", "not_run"


class _Worker:
    def __init__(self, index, env, workdir):
        self.index = index
        self.results_path = os.path.join(workdir, f"worker{index}.jsonl")
        self.log_path = os.path.join(workdir, f"worker{index}.log")
        tmp = os.path.join(workdir, f"tmp{index}")
        os.makedirs(tmp, exist_ok=True)
        open(self.results_path, "w").close()
        self.log = open(self.log_path, "ab")
        full_env = dict(os.environ)
        full_env.update(env)
        full_env.update(NPUSIM_SUITE_RESULTS=self.results_path, TMPDIR=tmp,
                        PYTHONPATH=os.pathsep.join([HERE] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import pytorch_suite_worker as w; w.main()"],
            stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT, env=full_env, cwd=HERE,
            start_new_session=True)
        self.offset = 0
        self.tests = None  # [(name, static skip reason)] once ready
        self.current = None
        self.started = None
        self.log_start = 0

    def events(self):
        with open(self.results_path) as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[:data.rfind("\n") + 1]
        self.offset += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def send(self, name):
        self.current, self.started = name, time.monotonic()
        self.log_start = os.path.getsize(self.log_path)
        self.proc.stdin.write((name + "\n").encode())
        self.proc.stdin.flush()

    def log_since_start(self, limit=8000):
        with open(self.log_path, "rb") as f:
            f.seek(self.log_start)
            text = f.read().decode(errors="replace")
        return text[-limit:]

    def kill(self):
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def close(self, grace=10.0):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self.kill()  # the fork server and any straggling rank, too
        self.log.close()


def run_suite(backend="npusim", device="cpu", tests=None, jobs=2, test_timeout=150.0, total_timeout=1800.0,
              keep=None, progress=None, startup_timeout=120.0, world_size=2):
    """Runs the suite; returns {test name: {"status", "detail", "duration"[, "log"]}}.

    `tests`: names to run (default: all); a name not in the suite is reported "not_run"
    with the reason. `keep`: a directory to keep the worker logs in. `progress(name,
    outcome)` is called as outcomes arrive."""
    env = {"NPUSIM_SUITE_BACKEND": backend, "NPUSIM_SUITE_DEVICE": device, "WORLD_SIZE": str(world_size),
           "NPUSIM_SUITE_INNER_TIMEOUT": str(max(10, int(test_timeout) - 30)),
           "PYTORCH_PRINT_REPRO_ON_FAILURE": "0"}
    tmp = tempfile.TemporaryDirectory(prefix="pytorch_suite_")
    workdir = keep or tmp.name
    os.makedirs(workdir, exist_ok=True)
    deadline = time.monotonic() + total_timeout
    outcomes = {}
    counter = [0]
    failed_starts = [0]  # workers in a row that died or hung before they were ready

    def record(name, status, detail="", duration=0.0, log=None, calls=None):
        outcomes[name] = {"status": status, "detail": detail, "duration": duration}
        if calls:
            outcomes[name]["calls"] = calls
        if log is not None and status not in (PASSED, SKIPPED):
            outcomes[name]["log"] = log
        if progress:
            progress(name, outcomes[name])

    def new_worker():
        counter[0] += 1
        w = _Worker(counter[0], env, workdir)
        w.spawned = time.monotonic()
        return w

    workers = [new_worker() for _ in range(max(1, jobs))]
    queue = None
    try:
        while time.monotonic() < deadline:
            for i, w in enumerate(workers):
                for ev in w.events():
                    if ev["event"] == "ready":
                        w.tests = ev["tests"]
                        failed_starts[0] = 0
                    elif ev["event"] == "end" and ev["test"] == w.current:
                        record(w.current, ev["status"], ev["detail"], ev["duration"], w.log_since_start(),
                               ev.get("calls"))
                        w.current = None
                if queue is None and w.tests is not None:
                    known = dict(w.tests)
                    wanted = list(known) if tests is None else list(tests)
                    order = []
                    for name in wanted:
                        if name not in known:
                            record(name, NOT_RUN, "no such test in DistributedTest._DistTestBase")
                        elif known[name] is not None:
                            record(name, SKIPPED, known[name])
                            outcomes[name]["static"] = True  # by a decorator, as for gloo
                        else:
                            order.append(name)
                    rank = {n: k for k, n in enumerate(SLOW_FIRST)}
                    order.sort(key=lambda n: rank.get(n, len(rank)))
                    queue = deque(order)
                if w.proc.poll() is not None or (w.current and time.monotonic() - w.started > test_timeout) or \
                        (w.tests is None and time.monotonic() - w.spawned > startup_timeout):
                    dead = w.proc.poll() is not None
                    if w.current:
                        what = (f"worker exited (rc={w.proc.returncode}) during the test" if dead else
                                f"hard limit: still running after {test_timeout:.0f} s; worker killed")
                        log = w.log_since_start()
                        record(w.current, CRASHED if dead else TIMEOUT, what + "\n" + log[-3000:],
                               round(time.monotonic() - w.started, 2), log)
                    elif w.tests is None:
                        failed_starts[0] += 1
                        if failed_starts[0] > 2 * max(1, jobs):
                            with open(w.log_path, "rb") as f:
                                tail = f.read()[-3000:].decode(errors="replace")
                            raise RuntimeError("pytorch_suite workers fail to start:\n" + tail)
                    w.kill()
                    w.close(grace=0)
                    workers[i] = w = new_worker()
                    continue
                if w.current is None and w.tests is not None and queue:
                    w.send(queue.popleft())
            if queue is not None and not queue and all(w.current is None for w in workers):
                break
            time.sleep(0.05)
        else:
            if queue is None:
                raise RuntimeError(f"pytorch_suite: no worker was ready within the overall limit of {total_timeout:.0f} s")
            for w in workers:
                if w.current:
                    record(w.current, TIMEOUT, f"overall limit of {total_timeout:.0f} s reached during the test",
                           round(time.monotonic() - w.started, 2), w.log_since_start())
            for name in (queue or []):
                record(name, NOT_RUN, f"overall limit of {total_timeout:.0f} s reached")
    finally:
        for w in workers:
            w.close(grace=5 if w.current is None else 0)
        tmp.cleanup()
    return outcomes


def counts(outcomes):
    return Counter(o["status"] for o in outcomes.values())


def call_summary(outcomes):
    """{device kind: (tests, calls)}: the suite's collective calls by the device of their tensors."""
    out = {}
    for o in outcomes.values():
        for kind, n in o.get("calls", {}).items():
            tests, calls = out.get(kind, (0, 0))
            out[kind] = (tests + 1, calls + n)
    return out


def first_error_line(detail):
    """The most telling line of a failure: the last exception line of the first failing rank."""
    ranks = re.split(r"Process \d+ exited with error code \d+ and exception:", detail)
    if len(ranks) > 1:
        detail = ranks[1]
    lines = [ln.strip() for ln in detail.splitlines() if ln.strip()]
    for marker in ("Error:", "Exception:", "error:"):
        hits = [ln for ln in lines if marker in ln and not ln.startswith("File ")]
        if hits:
            return hits[-1][:300]
    return lines[-1][:300] if lines else ""


def _main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["gloo", "npusim", "both"], default="both")
    ap.add_argument("--device", choices=["cpu", "npusim"], default="cpu",
                    help="npusim: the suite's _build_tensor tensors live on npusim (npusim backend only)")
    ap.add_argument("--jobs", type=int, default=2, help="tests run in parallel")
    ap.add_argument("--world-size", type=int, default=2, help="ranks per test")
    ap.add_argument("-k", "--tests", nargs="*", help="test names (default: all)")
    ap.add_argument("--test-timeout", type=float, default=150)
    ap.add_argument("--total-timeout", type=float, default=3600)
    ap.add_argument("--json", help="write {backend: outcomes} here")
    ap.add_argument("--keep", help="keep worker logs in this directory")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    backends = ["gloo", "npusim"] if args.backend == "both" else [args.backend]
    everything = {}
    for b in backends:
        t0 = time.monotonic()

        def progress(name, o, b=b):
            if args.verbose or o["status"] not in (PASSED, SKIPPED):
                print(f"[{b}] {name}: {o['status']} ({o['duration']} s) {first_error_line(o['detail']) if o['status'] != PASSED else ''}",
                      flush=True)

        device = args.device if b == "npusim" else "cpu"
        everything[b] = run_suite(b, device, args.tests, args.jobs, args.test_timeout, args.total_timeout,
                                  keep=os.path.join(args.keep, b) if args.keep else None, progress=progress,
                                  world_size=args.world_size)
        print(f"== {b} (device {device}): {dict(counts(everything[b]))} in {time.monotonic() - t0:.0f} s; "
              f"collective calls by tensor device (tests, calls): {call_summary(everything[b])}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(everything, f, indent=1, sort_keys=True)
    if len(everything) == 2:
        g, n = everything["gloo"], everything["npusim"]
        print(f"\n{'':10}{'gloo':>8}{'npusim':>8}")
        for status in (PASSED, FAILED, SKIPPED, TIMEOUT, CRASHED, NOT_RUN):
            print(f"{status:10}{counts(g)[status]:8}{counts(n)[status]:8}")
        regressions = sorted(t for t, o in g.items() if o["status"] == PASSED and n.get(t, {}).get("status") != PASSED)
        print(f"\npassed on gloo, not on npusim ({len(regressions)}):")
        for t in regressions:
            print(f"  {t}: {n[t]['status']}: {first_error_line(n[t]['detail'])}")
        better = sorted(t for t, o in n.items() if o["status"] == PASSED and g.get(t, {}).get("status") != PASSED)
        if better:
            print(f"passed on npusim, not on gloo ({len(better)}): {', '.join(better)}")


if __name__ == "__main__":
    _main()
