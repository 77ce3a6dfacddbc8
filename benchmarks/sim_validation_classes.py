"""Per-op-class validation of the calibrated efficiency (torch_npu_sim/simulation/efficiency.py):
predicted vs published TFLOP/s (or TB/s) for matmuls, attention and memory-bound kernels.

    python benchmarks/sim_validation_classes.py          # the table (simulated time only, < 1 s)
    python benchmarks/sim_validation_classes.py --fit    # rerun the fits behind the tables (needs scipy)

Predictions are what the runtime charges one launch of the kernel (torch.ops.npusim_sim.kernel_time_ns,
the function npusimLaunchKernel charges with; tests/simulation/test_efficiency.py checks that real
mm/bmm/SDPA/add launches are charged exactly that), FLOPs by the cost model's formulas (2mnk; attention
4·b·h·s·t·d forward, 2.5x that backward) and bytes of the tensors read and written. Each row says
whether its published figure was used to fit (FIT: its error shows the fit, not a validation) or held
out (HELD OUT). Error = (predicted - published) / published: negative means the model is too slow.
"""
import argparse
import math

from torch_npu_sim.simulation import chips, efficiency as eff

A100, H100 = chips.PRESETS["a100-sxm4-80gb"], chips.PRESETS["h100-sxm5-80gb"]


def predicted_ns(chip, flops, nbytes, compute_class, op_class, runtime):
    if runtime:
        from torch_npu_sim import simulation as sim

        sim.set_chip(chip.name)
        sim.set_efficiency("calibrated")
        return sim.kernel_time_ns(flops, nbytes, compute_class, op_class)
    return eff.predict_time_ns(flops, nbytes, compute_class, op_class, chip, eff.TABLES[chip.name])


def matmul(m, n, k):
    return 2.0 * m * n * k, 2.0 * (m * k + k * n + m * n)


def attention(seq, backward, tokens=16384, heads=16, head_dim=128):
    elems = (tokens // seq) * heads * seq * head_dim
    flops = 4.0 * (tokens // seq) * heads * seq * seq * head_dim * (2.5 if backward else 1)
    # forward: q, k, v read, out written; backward: grad_out, q, k, v, out read, dq, dk, dv written (bf16)
    return flops, (8 if backward else 4) * elems * 2.0


def rows():
    r = []
    # (a) large bf16 matmul, MAMF
    for chip in (A100, H100):
        m, n, k, tf = eff.PUBLISHED_MAMF[chip.name]
        r.append(("a", chip, f"bf16 matmul {m}x{n}x{k} (MAMF)", *matmul(m, n, k), 1, 1, tf, "FIT (pins max)"))
        m, n, k, tf = eff.PUBLISHED_MAMF_OLD[chip.name]
        r.append(("a", chip, f"bf16 matmul {m}x{n}x{k} (MAMF, older)", *matmul(m, n, k), 1, 1, tf, "HELD OUT"))
    # (b) matmul sizes (A100-class card, fp16 cuBLAS: the shape of the curve)
    for size in (256, 512, 1024, 1536, 2048, 3072, 4096):
        tf = eff.PUBLISHED_MATMUL_SIZES_A100[size]
        r.append(("b", A100, f"fp16 matmul {size}^3 (Triton tutorial)", *matmul(size, size, size), 1, 1, tf,
                  "FIT (shape; max from MAMF)"))
    # (c) memory bandwidth: an add of 64 Mi fp32 (two reads, one write)
    nbytes = 3 * 4.0 * (64 << 20)
    r.append(("c", A100, "fp32 add 64 Mi elements, TB/s", 64.0 * (1 << 20), nbytes, 0, 0, 1.80,
              "HELD OUT (0.90 assumed)"))
    # (d) attention, head dim 128, (16k / seq) x 16 heads
    for seq in (512, 2048, 8192, 16384):
        fl, by = attention(seq, False)
        r.append(("d", H100, f"FA3 forward seq {seq}", fl, by, 1, 2, eff.PUBLISHED_FA3_FWD_H100[seq], "FIT"))
        r.append(("d", H100, f"FA3 forward seq {seq} (tritonbench)", fl, by, 1, 2,
                  eff.PUBLISHED_TRITONBENCH_FA3_FWD_H100[seq], "HELD OUT"))
        fl, by = attention(seq, True)
        r.append(("d", H100, f"FA3 backward seq {seq}", fl, by, 1, 2, eff.PUBLISHED_FA3_BWD_H100[seq], "HELD OUT"))
    fl, by = attention(16384, False)
    r.append(("d", A100, "FA2 forward seq 16384 (73% of peak)", fl, by, 1, 2,
              eff.PUBLISHED_FA2_FWD_A100_FRACTION * A100.peak_flops_bf16 / 1e12, "FIT (pins max)"))
    return r


def table(runtime):
    lines = [f"{'':2}{'chip':<16} {'kernel':<42} {'published':>10} {'predicted':>10} {'error':>8}  figure"]
    worst = {}
    for cls, chip, what, flops, nbytes, cc, oc, published, role in rows():
        ns = predicted_ns(chip, flops, nbytes, cc, oc, runtime)
        predicted = (nbytes if cls == "c" else flops) / ns / 1e3  # TB/s or TFLOP/s
        error = (predicted - published) / published
        lines.append(f"{cls:<2}{chip.name:<16} {what:<42} {published:>10.1f} {predicted:>10.1f} {100 * error:>+7.1f}%  {role}")
        if role.startswith("HELD"):
            worst[cls] = max(worst.get(cls, 0), abs(error))
    lines.append("largest held-out error per class: " + ", ".join(f"({c}) {100 * e:.1f}%" for c, e in sorted(worst.items())))
    return "\n".join(lines)


def fit():
    """The fits behind efficiency.TABLES, rerun from the published figures."""
    from scipy.optimize import least_squares

    def tflops(chip, curve, flops, nbytes, op_class):
        # predict_time_ns without its rounding to whole ns (the fit needs a smooth function)
        compute = flops / (chip.peak_flops_bf16 * curve.at(flops)) * 1e9
        memory = nbytes / (chip.memory_bandwidth * 0.9) * 1e9
        return flops / (max(compute, memory) + chip.launch_latency_s * 1e9) / 1e3

    def least(points, chip, op_class):
        def resid(x):
            c = eff.Curve(min(x[0], 1.0), 10 ** x[1], min(x[2], 1.0))
            return [math.log(tflops(chip, c, f, b, op_class) / tf) for f, b, tf in points]
        s = least_squares(resid, [0.7, 10, 0.5], bounds=([0.1, 5, 0.05], [1, 14, 1]))
        return s.x[0], 10 ** s.x[1], s.x[2], math.sqrt(sum(v * v for v in s.fun) / len(s.fun))

    def pin(chip, half, exponent, flops, nbytes, target, op_class):
        lo, hi = 0.01, 1.0
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if tflops(chip, eff.Curve(mid, half, exponent), flops, nbytes, op_class) < target else (lo, mid)
        return (lo + hi) / 2

    pts = [(*matmul(n, n, n), tf) for n, tf in eff.PUBLISHED_MATMUL_SIZES_A100.items()]
    mx, half, p, rms = least(pts, A100, 1)
    print(f"matmul shape (A100 sizes): max {mx:.4f} half {half:.3g} exponent {p:.3f} rms {100 * rms:.1f}%")
    half, p = 1.09e9, 0.90
    for chip, h in ((A100, half), (H100, round(half * H100.peak_flops_bf16 / A100.peak_flops_bf16, -7))):
        m, n, k, tf = eff.PUBLISHED_MAMF[chip.name]
        print(f"  {chip.name}: half {h:.3g}, max pinned to MAMF {pin(chip, h, p, *matmul(m, n, k), tf, 1):.4f}")
    pts = [(*attention(s, False), tf) for s, tf in eff.PUBLISHED_FA3_FWD_H100.items()]
    mx, half, p, rms = least(pts, H100, 2)
    print(f"attention (FA3 forward, H100): max {mx:.4f} half {half:.3g} exponent {p:.3f} rms {100 * rms:.1f}%")
    h = round(2.47e10 * A100.peak_flops_bf16 / H100.peak_flops_bf16, -7)
    target = eff.PUBLISHED_FA2_FWD_A100_FRACTION * A100.peak_flops_bf16 / 1e12
    print(f"  a100-sxm4-80gb: half {h:.3g}, max pinned to FA2's 73% {pin(A100, h, 1.0, *attention(16384, False), target, 2):.4f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fit", action="store_true", help="rerun the fits (scipy)")
    parser.add_argument("--python", action="store_true", help="the Python formula instead of the runtime's charge")
    args = parser.parse_args()
    if args.fit:
        fit()
        return
    runtime = not args.python
    print(table(runtime))
    print("predictions: " + ("the runtime's charge (torch.ops.npusim_sim.kernel_time_ns)" if runtime
                             else "efficiency.predict_time_ns (Python)"))


if __name__ == "__main__":
    main()
