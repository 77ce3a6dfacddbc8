"""A CUDA-written DDP script (backend "nccl", one CUDA device per rank) started by torchrun,
unchanged, on npusim through the shim (NPUSIM_TRANSFER_CUDA=1): losses and weights equal the
same script's run on the CPU with gloo (its own fallback without CUDA)."""
import json
import os
import pathlib
import signal
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "transfer_cuda" / "cuda_programs" / "ddp_nccl.py"


def _torchrun(result_dir: pathlib.Path, shim: bool) -> list[dict]:
    result_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "--max-restarts", "0", str(SCRIPT)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "RESULT_DIR": str(result_dir),
                                 "NPUSIM_TRANSFER_CUDA": "1" if shim else "0"})
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its ranks: one session
        out, err = proc.communicate()
        raise AssertionError("torchrun hung:\n" + err[-3000:])
    assert proc.returncode == 0, err[-3000:]
    return sorted((json.loads(f.read_text()) for f in result_dir.glob("rank*.json")), key=lambda r: r["rank"])


def test_nccl_ddp_script_under_torchrun_equals_gloo_on_cpu(tmp_path):
    on_npusim = _torchrun(tmp_path / "npusim", shim=True)
    on_cpu = _torchrun(tmp_path / "cpu", shim=False)
    assert [r["rank"] for r in on_npusim] == [0, 1] == [r["rank"] for r in on_cpu]
    assert [(r["backend"], r["device"]) for r in on_npusim] == [("npusim", "npusim:0"), ("npusim", "npusim:1")]
    assert [(r["backend"], r["device"]) for r in on_cpu] == [("gloo", "cpu"), ("gloo", "cpu")]
    for npusim_rank, cpu_rank in zip(on_npusim, on_cpu):
        assert npusim_rank["losses"] == cpu_rank["losses"] and npusim_rank["weights"] == cpu_rank["weights"]
    assert on_npusim[0]["weights"] == on_npusim[1]["weights"]  # DDP kept the replicas equal
