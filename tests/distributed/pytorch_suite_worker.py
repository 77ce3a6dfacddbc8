"""Worker side of the PyTorch distributed-suite harness (driver: pytorch_suite.py).

Runs tests of PyTorch's own ``DistributedTest._DistTestBase``
(torch/testing/_internal/distributed/distributed_test.py) the way PyTorch's
test/distributed/test_distributed_spawn.py does (``TestDistBackend`` + ``_DistTestBase``,
one process per rank, 2 ranks), with three adaptations, none of which edits torch:

* **Same selection as gloo.** The suite reads ``BACKEND`` when it is imported: its
  decorators (``BACKEND != "gloo"``, ``backend_feature["ddp"]``, ...) decide which tests
  run, and test bodies branch on it (``if BACKEND == "gloo": <build a CPU model>``). It is
  imported with ``BACKEND=gloo`` whatever the backend under test, so gloo and npusim run
  exactly the same tests, on the same code paths. For ``NPUSIM_SUITE_BACKEND=npusim`` the
  process groups themselves are npusim: ``init_process_group`` / ``new_group`` map the
  backend "gloo" to "npusim" (every group of the test, explicit gloo side groups included),
  and ``dist.monitored_barrier`` (which torch allows for gloo only) goes to
  ``torch_npu_sim.distributed.monitored_barrier`` for npusim groups.
* **Ranks start from a fork server** (``multiprocessing`` "forkserver", this module
  preloaded) instead of a fresh interpreter per rank per test: importing torch and the
  suite costs ~8 s of CPU, which would dominate (x2 ranks x ~200 tests). Each rank is a
  fresh fork of a process that has imported but never run anything (no process group, no
  device work); the parent's environment (TEMP_DIR etc., set per test) is passed along.
* **Device tensors** (``NPUSIM_SUITE_DEVICE=npusim``): the suite's tensor builders
  ``_build_tensor`` / ``_build_multidim_tensor`` (used by most collective tests) return
  tensors on ``npusim:<rank>``; everything else is left as the suite makes it (CPU).
  Off by default: the CUDA variants of the tests stay skipped (no CUDA).

Protocol: test names arrive on stdin, one per line; JSON lines go to the file
``$NPUSIM_SUITE_RESULTS`` ("ready" with the test list, then "start"/"end" per test).
"""
import json
import os
import sys
import time
import traceback
import unittest

SUITE_BACKEND = os.environ.get("NPUSIM_SUITE_BACKEND", "npusim")
SUITE_DEVICE = os.environ.get("NPUSIM_SUITE_DEVICE", "cpu")
WORLD_SIZE = os.environ.setdefault("WORLD_SIZE", "2")
# The suite's own per-test limit (it then terminates the ranks and reports their stacks);
# the driver's hard limit, a little longer, kills whatever is left.
INNER_TIMEOUT = int(os.environ.get("NPUSIM_SUITE_INNER_TIMEOUT", "100"))
os.environ["DISTRIBUTED_TESTS_DEFAULT_TIMEOUT"] = str(INNER_TIMEOUT)
os.environ["BACKEND"] = "gloo"  # see the module docstring: the suite selects and branches as for gloo
# PyTorch's CI runs the suite with INIT_METHOD env:// and file://; the main group of every
# test uses a file of its own either way, and INIT_METHOD only decides whether
# test_barrier_timeout_global (re-init through INIT_METHOD) runs: file:// (the default) runs it.
if os.environ.get("NPUSIM_SUITE_INIT_METHOD", "file") == "file":
    import tempfile  # the driver gives each worker a TMPDIR of its own

    os.environ["INIT_METHOD"] = "file://" + os.path.join(tempfile.gettempdir(), "npusim_suite_init_method")
else:
    os.environ["INIT_METHOD"] = "env://"
os.environ.setdefault("TEMP_DIR", "/nonexistent")  # replaced per test by TestDistBackend.setUp

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.distributed.distributed_c10d as c10d  # noqa: E402
from torch.testing._internal import common_distributed  # noqa: E402
from torch.testing._internal.distributed import distributed_test as dt  # noqa: E402

for _name in list(common_distributed.TIMEOUT_OVERRIDE):
    common_distributed.TIMEOUT_OVERRIDE[_name] = min(common_distributed.TIMEOUT_OVERRIDE[_name], INNER_TIMEOUT)
common_distributed.TIMEOUT_DEFAULT = INNER_TIMEOUT


# --------------------------------------------------------------- npusim adaptations

def _is_gloo(backend) -> bool:
    return backend is not None and str(backend).lower() == "gloo"


def _install_npusim_patches() -> None:
    import torch_npu_sim.distributed as npd

    orig_init, orig_new_group, orig_monitored = dist.init_process_group, c10d.new_group, c10d.monitored_barrier

    def init_process_group(*args, **kwargs):
        if args and _is_gloo(args[0]):
            args = ("npusim",) + args[1:]
        if _is_gloo(kwargs.get("backend")):
            kwargs["backend"] = "npusim"
        return orig_init(*args, **kwargs)

    def new_group(*args, **kwargs):
        if len(args) >= 3 and _is_gloo(args[2]):
            args = args[:2] + ("npusim",) + args[3:]
        if _is_gloo(kwargs.get("backend")):
            kwargs["backend"] = "npusim"
        return orig_new_group(*args, **kwargs)

    def monitored_barrier(group=c10d.GroupMember.WORLD, timeout=None, wait_all_ranks=False):
        pg = group if group is not None else c10d._get_default_group()
        if pg is not c10d.GroupMember.NON_GROUP_MEMBER and c10d.get_backend(pg) == "npusim":
            return npd.monitored_barrier(pg, timeout=timeout, wait_all_ranks=wait_all_ranks)
        return orig_monitored(group, timeout, wait_all_ranks)

    for mod in (dist, c10d):
        mod.init_process_group = init_process_group
        mod.new_group = new_group
        mod.monitored_barrier = monitored_barrier


def _install_device_patches() -> None:
    build, build_md = dt._build_tensor, dt._build_multidim_tensor

    def _on_npusim(t):
        return t.to("npusim")  # the rank's device: set in _run

    def _build_tensor(size, value=None, dtype=torch.float, device_id=None):
        t = build(size, value, dtype, device_id)
        return _on_npusim(t) if device_id is None else t

    def _build_multidim_tensor(dim, dim_size, value=None, dtype=torch.float):
        return _on_npusim(build_md(dim, dim_size, value, dtype))

    dt._build_tensor = _build_tensor
    dt._build_multidim_tensor = _build_multidim_tensor


# Which device the tensors of the suite's collective calls were on: each rank counts its
# calls of these torch.distributed functions (by the device of their tensors) and appends
# {test: {device: calls}} to $NPUSIM_SUITE_TRACE when it exits; the worker reports the sums.
TRACED = ("broadcast", "all_reduce", "reduce", "all_gather", "all_gather_into_tensor", "all_gather_coalesced",
          "all_reduce_coalesced", "gather", "scatter", "reduce_scatter", "reduce_scatter_tensor", "all_to_all",
          "all_to_all_single", "send", "recv", "batch_isend_irecv")  # not isend/irecv: P2POp checks identity
_calls: dict = {}


def _devices(obj, out):
    if isinstance(obj, torch.Tensor):
        out.add(obj.device.type)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _devices(o, out)
    elif isinstance(obj, dist.P2POp):
        _devices(obj.tensor, out)


def _install_tracing() -> None:
    for name in TRACED:
        fn = getattr(dist, name)

        def traced(*args, _fn=fn, **kwargs):
            devs = set()
            _devices(list(args) + list(kwargs.values()), devs)
            if devs:
                kind = "npusim" if "npusim" in devs else "+".join(sorted(devs))
                _calls[kind] = _calls.get(kind, 0) + 1
            return _fn(*args, **kwargs)

        setattr(dist, name, traced)


_install_tracing()
if SUITE_BACKEND == "npusim":
    _install_npusim_patches()
    if SUITE_DEVICE == "npusim":
        _install_device_patches()
elif SUITE_BACKEND != "gloo":
    raise SystemExit(f"NPUSIM_SUITE_BACKEND must be gloo or npusim, not {SUITE_BACKEND!r}")


# --------------------------------------------------------------- the test class

# Tests that check the backend's *name* against BACKEND: they see "npusim" (in the ranks only).
BACKEND_NAME_TESTS = {"test_get_backend", "test_Backend_enum_class"}


class TestDistBackendWithSpawn(dt.TestDistBackend, dt.DistributedTest._DistTestBase):
    """test_distributed_spawn.py's class, ranks started from the fork server."""

    def setUp(self):
        super().setUp()
        self._spawn_processes()

    def _spawn_processes(self) -> None:
        ctx = torch.multiprocessing.get_context("forkserver")
        self._start_processes(ctx.Process)

    def _start_processes(self, proc) -> None:
        # MultiProcessTestCase._start_processes, plus this process's environment: a
        # forked rank would otherwise see the fork server's, not TEMP_DIR of this test.
        self.processes = []
        for rank in range(int(self.world_size)):
            parent_conn, child_conn = torch.multiprocessing.Pipe()
            process = proc(
                target=self.__class__._run,
                name="process " + str(rank),
                args=(rank, self._current_test_name(), self.file_name, child_conn),
                kwargs={"fake_pg": getattr(self, "fake_pg", False), "env": dict(os.environ)},
            )
            process.start()
            self.pid_to_pipe[process.pid] = parent_conn
            self.processes.append(process)

    @classmethod
    def _run(cls, rank, test_name, file_name, pipe, env=None, **kwargs):
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        if SUITE_BACKEND == "npusim":
            torch.npusim.set_device(rank % torch.npusim.device_count())
            if test_name in BACKEND_NAME_TESTS:
                dt.BACKEND = "npusim"
        try:
            super()._run(rank, test_name, file_name, pipe, **kwargs)
        finally:
            trace = os.environ.get("NPUSIM_SUITE_TRACE")
            if trace and _calls:
                with open(trace, "a") as f:
                    f.write(json.dumps({"test": test_name, "calls": _calls}) + "\n")


def list_tests(cls=TestDistBackendWithSpawn):
    """[(name, static skip reason or None)] for every test of the suite."""
    out = []
    for name in sorted(n for n in dir(dt.DistributedTest._DistTestBase) if n.startswith("test_")):
        fn = getattr(cls, name)
        skip = fn.__unittest_skip_why__ if getattr(fn, "__unittest_skip__", False) else None
        out.append((name, skip))
    return out


class _Result(unittest.TestResult):
    status, detail = "failed", "no outcome reported"

    def addSuccess(self, test):
        self.status, self.detail = "passed", ""

    def addFailure(self, test, err):
        self.status, self.detail = "failed", self._exc_info_to_string(err, test)

    def addError(self, test, err):
        self.status, self.detail = "failed", self._exc_info_to_string(err, test)

    def addSkip(self, test, reason):
        self.status, self.detail = "skipped", str(reason)

    def addExpectedFailure(self, test, err):
        self.status, self.detail = "passed", "expected failure"

    def addUnexpectedSuccess(self, test):
        self.status, self.detail = "failed", "unexpected success"

    def addSubTest(self, test, subtest, err):
        if err is not None:
            self.status, self.detail = "failed", self._exc_info_to_string(err, test)


def main() -> None:
    out = open(os.environ["NPUSIM_SUITE_RESULTS"], "a", buffering=1)
    trace = os.environ["NPUSIM_SUITE_TRACE"] = os.environ["NPUSIM_SUITE_RESULTS"] + ".calls"

    def emit(**kw):
        out.write(json.dumps(kw) + "\n")
        out.flush()

    torch.multiprocessing.get_context("forkserver").set_forkserver_preload([__name__])
    emit(event="ready", pid=os.getpid(), tests=list_tests())
    TestDistBackendWithSpawn.setUpClass()
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        emit(event="start", test=name)
        t0 = time.monotonic()
        result = _Result()
        try:
            TestDistBackendWithSpawn(name).run(result)
        except BaseException:  # noqa: BLE001 - reported, the worker goes on
            result.status, result.detail = "failed", traceback.format_exc()
        calls = {}
        if os.path.exists(trace):
            with open(trace) as f:
                for line in f:
                    rec = json.loads(line)
                    if rec["test"] == name:
                        for kind, n in rec["calls"].items():
                            calls[kind] = calls.get(kind, 0) + n
            os.unlink(trace)
        emit(event="end", test=name, status=result.status, detail=result.detail,
             duration=round(time.monotonic() - t0, 2), calls=calls)

