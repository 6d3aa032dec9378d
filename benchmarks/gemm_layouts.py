"""Every matmul of a DiT block's training step in each operand layout it could take for free, same GPU, same
process: which layout (and whether the bias epilogue) makes a GEMM of the same shape slower.

    python benchmarks/gemm_layouts.py --arch DiT-XL/2 --batch 128

Run 43's profile (docs/benchmarks.md) gave GEMMs of one shape different speeds: the forward's bias GEMMs
(``aten::addmm``, x·Wᵀ + b) ran at 510–592 TFLOP/s, while the input-gradient GEMM of the same M, N, K (g·W, no
bias) ran at 708; fc2's weight gradient (gᵀ·h) at 628 against fc1's (gᵀ·x, the transposed shape) at 754. Per layer
(qkv, proj, fc1, fc2) and pass, the rows are the ways to get the same product:

- forward, y = x·Wᵀ + b: ``addmm`` as ``nn.Linear`` runs it (``x·Wᵀ +b``); the same without the bias (``x·Wᵀ``,
  the bias then added by a later pass); with W stored transposed (``x·Wt``, ``x·Wt +b``: the cast of the fp32
  weight to bf16 can write that layout); CUTLASS's bias epilogue (``sm90 +b``, where ``sm90_gemm`` runs);
- input gradient, g·W: as autograd runs it (``g·W``), and from the transposed copy (``g·Wtᵀ``);
- weight gradient, gᵀ·x: as autograd runs it (``gᵀ·x``), and as the transposed product's view (``(xᵀ·g)ᵀ``).

Time: median over ``--iters`` rounds of ``--inner`` back-to-back calls (CUDA events), so each row runs long enough
for the GPU's clock to settle at its power cap, as in a training step. Each row also names the kernel cuBLAS (or
CUTLASS) ran, to compare with the kernels of a training step's profile (``train_throughput.py --profile``): alone, the
forward's bias GEMMs were the fastest variant (run 46), and their kernel ran within 7 % of that speed in a training
step (runs 50-53; the profile's per-op table had over-counted them). On CPU it runs the same ops at toy size.
"""

from __future__ import annotations

import argparse
import json

import torch

from _common import add_shape_args, median_time, peak_tflops, shape_setup

from hddm_p2p.models import get_preset, sm90_gemm

LAYERS = {"qkv": (3, 1), "proj": (1, 1), "fc1": (4, 1), "fc2": (1, 4)}  # (out, in) in units of D


def _sm90_bias(x, w, b):
    """CUTLASS's bias epilogue where it runs here, else None (the module switch is left as it was)."""
    was = sm90_gemm.enabled
    sm90_gemm.enabled = True
    try:
        if not sm90_gemm.runnable("bias", x, w, b):
            return None
    finally:
        sm90_gemm.enabled = was
    return lambda: sm90_gemm.gemm(x, w, epilogue="bias", bias=b)


def cases(tokens: int, d: int, device, dtype):
    """(layer, pass, variant, n, k, fn) for every matmul of one block (tokens × n outputs × k inputs); each variant
    of a pass computes the same product."""
    g = torch.Generator(device=device).manual_seed(0)
    rows = []
    for layer, (o, i) in LAYERS.items():
        n, k = o * d, i * d
        x = torch.randn(tokens, k, generator=g, device=device).to(dtype)
        grad = torch.randn(tokens, n, generator=g, device=device).to(dtype)
        w = (torch.randn(n, k, generator=g, device=device) * k ** -0.5).to(dtype)
        b = torch.randn(n, generator=g, device=device).to(dtype)
        wt = w.t().contiguous()
        fwd = [("x·Wᵀ +b", lambda x=x, w=w, b=b: torch.addmm(b, x, w.t())),
               ("x·Wᵀ", lambda x=x, w=w: x @ w.t()),
               ("x·Wt", lambda x=x, wt=wt: x @ wt),
               ("x·Wt +b", lambda x=x, wt=wt, b=b: torch.addmm(b, x, wt))]
        sm90 = _sm90_bias(x, w, b)
        if sm90 is not None:
            fwd.append(("sm90 +b", sm90))
        rows += [(layer, "forward", v, n, k, fn) for v, fn in fwd]
        rows += [(layer, "input grad", "g·W", n, k, lambda grad=grad, w=w: grad @ w),
                 (layer, "input grad", "g·Wtᵀ", n, k, lambda grad=grad, wt=wt: grad @ wt.t())]
        rows += [(layer, "weight grad", "gᵀ·x", n, k, lambda grad=grad, x=x: grad.t() @ x),
                 (layer, "weight grad", "(xᵀ·g)ᵀ", n, k, lambda grad=grad, x=x: (x.t() @ grad).t())]
    return rows


def main_kernel(fn, device) -> str:
    """The name of the kernel that takes most of one call's GPU time ("-" off CUDA): which cuBLAS kernel a layout
    gets, to set beside the kernels a training step's profile names."""
    if device.type != "cuda":
        return "-"
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize(device)
    kernels = [(e.self_device_time_total, e.key) for e in prof.key_averages()
               if e.device_type.name != "CPU" and e.self_device_time_total > 0]
    return max(kernels)[1] if kernels else "-"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_args(ap, iters=7)
    ap.add_argument("--inner", type=int, default=20, help="back-to-back calls per timed round")
    args = ap.parse_args(argv)
    pairs, device, dtype = shape_setup(ap, args)
    peak = peak_tflops(device)
    print(f"{'arch':10} {'layer':5} {'pass':12} {'variant':10} {'M':>6} {'N':>5} {'K':>5} {'ms':>8} {'TFLOP/s':>8} "
          f"{'of peak':>7} {'vs first':>8}  kernel")
    for arch, batch in pairs:
        cfg = get_preset(arch, input_size=args.input_size, in_channels=4)
        tokens = batch * (args.input_size // cfg.patch_size) ** 2
        first = {}
        for layer, pas, variant, n, k, fn in cases(tokens, cfg.hidden_size, device, dtype):
            t = median_time(fn, args.iters, device, warmup=3, inner=args.inner)
            ref = first.setdefault((layer, pas), t)
            tflops = 2 * tokens * n * k / t / 1e12
            share = f"{100 * tflops / peak:6.1f}%" if peak else f"{'-':>7}"
            kernel = main_kernel(fn, device)
            print(f"{arch:10} {layer:5} {pas:12} {variant:10} {tokens:6d} {n:5d} {k:5d} {1e3 * t:8.4f} "
                  f"{tflops:8.1f} {share} {ref / t:7.3f}x  {kernel[:60]}")
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps({"arch": arch, "batch": batch, "layer": layer, "pass": pas,
                                        "variant": variant, "tokens": tokens, "n": n, "k": k, "ms": 1e3 * t,
                                        "tflops": tflops, "vs_first": ref / t, "kernel": kernel}) + "\n")


if __name__ == "__main__":
    main()
