"""torchtitan's train entry point with the shims torchtitan 0.3.0 needs on torch 2.13.

Run under torchrun, with torchtitan's own arguments:

    torchrun --nproc-per-node 2 examples/torchtitan/train.py --module llama3 \
        --config llama3_debugmodel --parallelism.spmd_backend partial_dtensor ...

torchtitan picks npusim by itself (`torch._utils._get_available_device_type`).
TITAN_DEVICE=cpu runs the same training on the CPU with gloo, the baseline npusim is
compared against.
"""
import os
import sys
from datetime import timedelta

if os.environ.get("TITAN_DEVICE") == "cpu":
    # the baseline must not see npusim at all (torch would pick it as the accelerator)
    os.environ["TORCH_DEVICE_BACKEND_AUTOLOAD"] = "0"

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402


def _set_timeout(timeout: timedelta, group=None) -> None:
    # torchtitan calls dist.set_timeout (public from torch 2.14); 2.13 has it privately.
    dist.distributed_c10d._set_pg_timeout(timeout, group)


def _use_cpu() -> None:
    """Makes torchtitan see the CPU as its device (it otherwise assumes an accelerator)."""
    import types
    import torch._utils

    cpu = types.SimpleNamespace(**{k: getattr(torch.cpu, k) for k in dir(torch.cpu)
                                   if not k.startswith("__")})
    cpu.set_device = lambda *a, **k: None
    cpu.current_device = lambda: 0  # torch.cpu's is "cpu"; barrier(device_ids=) wants an int
    cpu.empty_cache = lambda: None
    cpu.reset_peak_memory_stats = lambda *a, **k: None
    cpu.memory_stats = lambda *a, **k: {}
    cpu.get_device_name = lambda *a, **k: "cpu"
    cpu.get_device_properties = lambda *a, **k: types.SimpleNamespace(
        name="cpu", total_memory=1 << 40)
    cpu.memory = types.SimpleNamespace(
        reset_peak_memory_stats=lambda *a, **k: None, empty_cache=lambda: None)
    torch._utils._get_available_device_type = lambda: "cpu"
    # torchtitan sets FSDP's gradient divide factor to 1.0, which FSDP2 turns into a
    # PREMUL_SUM reduce-scatter that gloo lacks; a SUM then a division by 1.0 is the same.
    from torch.distributed.fsdp import FSDPModule

    set_factor = FSDPModule.set_gradient_divide_factor

    def set_gradient_divide_factor(self, factor: float) -> None:
        set_factor(self, factor)
        self.set_force_sum_reduction_for_comms(True)

    FSDPModule.set_gradient_divide_factor = set_gradient_divide_factor
    # torch refuses FlexAttention backward on the CPU up front, although its eager
    # unfused path (the one npusim runs) is device-generic: lift the guard for the baseline.
    from torch.nn.attention import flex_attention as flex

    validate = flex._validate_device
    flex._validate_device = lambda q, k, v: None if q.device.type == "cpu" else validate(q, k, v)
    real_get_module = torch._utils._get_device_module
    torch._utils._get_device_module = (
        lambda device_type="cuda": cpu if device_type == "cpu" else real_get_module(device_type))


def _eager_flex_attention() -> None:
    """Runs torchtitan's FlexAttention eagerly (it always wraps it in torch.compile).

    Inductor has no FlexAttention backward for the CPU, so a CPU baseline must run it
    eagerly; npusim runs eager and compiled alike, and eager on both sides gives the
    same math on both.
    """
    from torch.nn.attention.flex_attention import flex_attention
    from torchtitan.models.common.attention import FlexAttention

    FlexAttention._compiled_flex_attn = flex_attention


def _pipeline_step_with_microbatches() -> None:
    """Lets PipelineSchedule*.step take pre-split microbatches, as torchtitan 0.3.0 calls it.

    torchtitan passes `arg_mbs`/`kwarg_mbs`/`target_mbs` (an API newer than torch 2.13,
    whose step() takes the whole batch and splits it); 2.13 runs pre-split microbatches
    through `_step_microbatches`, which this forwards them to after step()'s resets.
    """
    import inspect
    from torch.distributed.pipelining import schedules

    for cls in (schedules.PipelineScheduleSingle, schedules.PipelineScheduleMulti):
        step = cls.step
        if "arg_mbs" in inspect.signature(step).parameters:
            continue

        def step_microbatches(self, *args, arg_mbs=None, kwarg_mbs=None, target_mbs=None,
                              losses=None, return_outputs=True, loss_kwargs=None, _step=step, **kwargs):
            if arg_mbs is None and kwarg_mbs is None and target_mbs is None:
                return _step(self, *args, losses=losses, return_outputs=return_outputs,
                             loss_kwargs=loss_kwargs, **kwargs)
            for stage in getattr(self, "_stages", None) or [self._stage]:
                stage.has_backward = self._has_backward
                stage.clear_runtime_states()
            self._step_microbatches(arg_mbs, kwarg_mbs, target_mbs, losses, return_outputs,
                                    loss_kwargs=loss_kwargs)
            return None

        cls.step = step_microbatches


def _record_losses(path: str) -> None:
    """Appends each logged step's loss and grad norm, at full precision, to a JSONL file."""
    import json
    from torchtitan.components.metrics import MetricsProcessor

    log = MetricsProcessor.log

    def log_and_record(self, step, global_avg_loss, global_max_loss, grad_norm, **kw):
        # the last rank: with pipeline parallelism only the last stage has the loss
        if int(os.environ.get("RANK", "0")) == int(os.environ.get("WORLD_SIZE", "1")) - 1:
            with open(path, "a") as f:
                f.write(json.dumps({"step": step, "loss": float(global_avg_loss),
                                    "grad_norm": float(grad_norm)}) + "\n")
        return log(self, step, global_avg_loss, global_max_loss, grad_norm, **kw)

    MetricsProcessor.log = log_and_record


def _record_simulated_steps(path: str) -> None:
    """Writes each step's simulated time and the peak device memory so far to a JSON file per rank.

    Used with NPUSIM_COST_ONLY=1 and NPUSIM_CHIP (examples/predict_llama.py): the step runs
    without values on the simulated chip; its time is the simulated clock, not the host's.
    """
    import json
    from torchtitan.trainer import Trainer
    from torch_npu_sim import simulation as sim

    step = Trainer.train_step
    records = []

    def device_time_ns() -> int:
        # after a device synchronisation the host's simulated time is when the device's last
        # work ended; a zero-length marker on the current stream starts there
        torch.npusim.synchronize()
        stream = torch.npusim.current_stream()
        torch.ops.npusim_sim.charge(stream.stream_id, stream.device_index, stream.device_type, 0,
                                    "npusim::step_boundary", 0.0, 0)
        return sim.sim_time_ns()

    from torchtitan.components.metrics import DeviceMemoryMonitor

    peak_stats = DeviceMemoryMonitor.get_peak_stats
    last_peak = {}

    def recorded_peak_stats(self):
        # torchtitan reads (and then resets) the device's peak memory when it logs a step
        stats = peak_stats(self)
        last_peak.update(max_active_gib=stats.max_active_gib, max_reserved_gib=stats.max_reserved_gib)
        return stats

    DeviceMemoryMonitor.get_peak_stats = recorded_peak_stats

    def timed_train_step(self, data_iterator):
        torch.npusim.synchronize()
        sim.reset()  # clocks and per-op totals: this step's alone
        start = device_time_ns()
        result = step(self, data_iterator)
        end = device_time_ns()
        records.append({"step": self.step, "sim_ns": end - start, **last_peak})
        last_peak.clear()
        report = {"rank": int(os.environ.get("RANK", "0")), "world": int(os.environ.get("WORLD_SIZE", "1")),
                  "chip": sim.get_chip().name, "cost_only": sim.is_cost_only(),
                  "flops_per_token": getattr(self.metrics_processor, "num_flops_per_token", None),
                  "local_batch": self.config.training.local_batch_size, "seq_len": self.config.training.seq_len,
                  "steps": records,
                  "breakdown": [[s.name, s.kind, s.count, s.flops, s.bytes, s.sim_ns] for s in sim.breakdown()[:40]]}
        with open(f"{path}.rank{report['rank']}.json", "w") as f:
            json.dump(report, f)
        return result

    Trainer.train_step = timed_train_step


def _causal_sdpa_attention() -> None:
    """Runs torchtitan's FlexAttention layers as causal scaled-dot-product attention.

    torchtitan 0.3.0 builds Llama 3 with FlexAttention only (it refuses its SDPA backend for
    language models), which GPUs run as one fused kernel; npusim's CPU code generation
    unfuses it (the scores materialised), so its predicted time and memory would not be a
    GPU's. With the plain causal mask (no document masking) the two compute the same
    attention, and SDPA is charged as one fused causal attention kernel, as the published
    runs used (torchtitan's performance figures predate FlexAttention).
    """
    import torch.nn.functional as F
    from torchtitan.models.common.attention import FlexAttention

    def causal_sdpa(q, k, v, *, score_mod, block_mask, scale, enable_gqa, return_aux, kernel_options):
        if score_mod is not None or return_aux.lse:
            raise NotImplementedError("TITAN_ATTENTION=causal_sdpa: score_mod and lse outputs need FlexAttention")
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=enable_gqa), None

    FlexAttention._compiled_flex_attn = staticmethod(causal_sdpa)
    # selective activation checkpointing saves FlexAttention's output (torchtitan's save list);
    # the stand-in must be saved alike, not recomputed
    from torchtitan.distributed import activation_checkpoint

    default_save_ops = activation_checkpoint._get_default_save_ops
    activation_checkpoint._get_default_save_ops = lambda: set(default_save_ops()) | {
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default}


def main() -> None:
    if not hasattr(dist, "set_timeout"):
        dist.set_timeout = _set_timeout
    _pipeline_step_with_microbatches()
    if os.environ.get("TITAN_DEVICE") == "cpu":
        _use_cpu()
    # the local dataset is read with `datasets`; keep it and the hub offline
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if os.environ.get("TITAN_EAGER_FLEX") == "1":
        _eager_flex_attention()
    if os.environ.get("TITAN_LOSS_FILE"):
        _record_losses(os.environ["TITAN_LOSS_FILE"])
    if os.environ.get("TITAN_ATTENTION") == "causal_sdpa":
        _causal_sdpa_attention()
    if os.environ.get("TITAN_SIM_REPORT"):
        _record_simulated_steps(os.environ["TITAN_SIM_REPORT"])
    from torchtitan.train import main as titan_main

    titan_main()


if __name__ == "__main__":
    sys.exit(main())
