"""The cost model's predictions for the a100-sxm4-80gb preset against published measurements
of the A100 80GB SXM (simulated time, not host time: nothing here depends on this machine):

    python benchmarks/sim_validation.py [--seq 2048]   (default 512: bf16 is slow on hosts without AVX-512)

- a memory-bound op (an add of 64 Mi floats) against a measured A100 80GB DRAM bandwidth;
- a large bf16 matmul (FLOPs / peak by construction, plus the launch latency);
- one transformer layer of the GPT 1.7B shape of Megatron-LM (hidden 2304, 24 heads, sequence
  2048 or shorter, micro-batch 1; forward and backward, bf16 autocast) against the model FLOP utilisation
  Megatron-LM reports for that model.
Errors are (predicted time - measured time) / measured time: negative means the model is too fast.
"""
import argparse

import torch

from torch_npu_sim import simulation as sim

# published measurements, A100 80GB SXM
MEASURED_DRAM_BANDWIDTH = 1.80e12  # NVIDIA developer forum, "Trouble to Reach Peak Bandwidth of A100" (2025): a read kernel at 1.80 TB/s, 88% of 2.039 per Nsight Compute
MEGATRON_1P7B_TFLOPS = 137e12  # Narayanan et al., "Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM" (SC'21), Table 1: GPT 1.7B, 137 TFLOP/s per GPU (44% of peak)
MTNLG_TFLOPS = (113e12, 126e12)  # Smith et al., "Using DeepSpeed and Megatron to Train Megatron-Turing NLG 530B" (2022), sec. 2.4: 113-126 TFLOP/s per A100


def charged(fn):
    torch.npusim.synchronize()
    before = sim.sim_time_ns()
    fn()
    torch.npusim.synchronize()
    return (sim.sim_time_ns() - before) / 1e9


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seq", type=int, default=512, help="Megatron-LM used 2048; the default keeps the host run short")
    args = parser.parse_args()
    chip = sim.set_chip("a100-sxm4-80gb")
    sim.enable()
    rows = []

    x = torch.ones(64 << 20, device="npusim")
    y = torch.ones(64 << 20, device="npusim")
    t = charged(lambda: x.add_(y))
    nbytes = 3 * 4 * (64 << 20)
    measured = nbytes / MEASURED_DRAM_BANDWIDTH
    rows.append(("add_ 64 Mi fp32 (memory bound)", f"{nbytes / t / 1e12:.2f} TB/s", f"{MEASURED_DRAM_BANDWIDTH / 1e12:.2f} TB/s",
                 f"{100 * (t - measured) / measured:+.0f}%"))
    del x, y

    a = torch.ones(2048, 2048, device="npusim", dtype=torch.bfloat16)
    t = charged(lambda: a @ a)
    rows.append(("mm 2048^3 bf16", f"{2 * 2048 ** 3 / t / 1e12:.0f} TFLOP/s", "(by construction: FLOPs / peak + latency)", "-"))
    del a

    h, heads, s = 2304, 24, args.seq
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(h, heads, 4 * h, dropout=0.0, activation="gelu", batch_first=True,
                                             norm_first=True, device="npusim")
    tokens = torch.randn(1, s, h, device="npusim", requires_grad=True)

    def step():
        with torch.autocast("npusim", dtype=torch.bfloat16):
            layer(tokens).float().sum().backward()

    step()  # warm-up
    sim.reset()
    t = charged(step)
    flops = 72 * s * h * h * (1 + s / (6 * h))  # Megatron-LM's count per layer, forward + backward
    predicted_tflops = flops / t
    measured = flops / MEGATRON_1P7B_TFLOPS
    rows.append((f"transformer layer h={h} s={s} fwd+bwd bf16", f"{predicted_tflops / 1e12:.0f} TFLOP/s "
                 f"({100 * predicted_tflops / chip.peak_flops_bf16:.0f}% MFU)",
                 f"{MEGATRON_1P7B_TFLOPS / 1e12:.0f} TFLOP/s (44%; MT-NLG 530B: 113-126)", f"{100 * (t - measured) / measured:+.0f}%"))
    classes = {}
    for stat in sim.breakdown():
        key = "matmul/attention" if stat.name in ("aten::mm", "aten::addmm", "aten::bmm") or "attention" in stat.name else "other"
        classes[key] = classes.get(key, 0) + stat.sim_ns
    print("\ncost model (a100-sxm4-80gb preset) vs published A100 80GB SXM measurements")
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in [("case", "predicted", "published", "error (time)")] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    total = sum(classes.values())
    print("transformer layer, predicted time by class: " +
          ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(classes.items())))


if __name__ == "__main__":
    main()
