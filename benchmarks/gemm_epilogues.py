"""The matmuls of a DiT block, each through PyTorch and through ``hddm_p2p.models.cublaslt`` (cuBLASLt with
the heuristic's first algorithm, and with the fastest of its candidates), same GPU, same process.

    python benchmarks/gemm_epilogues.py --arch DiT-XL/2 --batch 128 --arch DiT-B/2 --batch 256

Rows per (arch, batch): the four sampling GEMMs (qkv, proj, fc1 + bias + GELU, fc2) and the training MLP's
epilogue GEMMs — fc1 keeping the pre-activation (GELU_AUX_BIAS), fc2's input gradient times GELU'(pre)
(DGELU) with fc1's bias gradient summed after it, and the same with the sum in the epilogue (DGELU_BGRAD). The PyTorch column runs what a model without this
module runs: ``F.linear``, ``torch._addmm_activation`` (cuBLASLt's GELU epilogue, first heuristic pick), or
the matmul and ``gelu``/``gelu_backward`` as separate kernels. Time: median of ``--iters`` calls (CUDA events)
after warm-up; TFLOP/s counts the matmul only (2 per multiply-add). On CPU it runs the ops' PyTorch fallbacks.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from _common import add_shape_args, median_time, shape_setup

from hddm_p2p.models import cublaslt, get_preset


def cases(tokens: int, d: int, device, dtype):
    """(name, flops, pytorch fn, cublaslt fn) for one block's GEMMs at ``tokens`` rows and width d."""
    g = torch.Generator(device=device).manual_seed(0)
    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, device=device) * scale).to(dtype)
    x, x4 = rnd(tokens, d), rnd(tokens, 4 * d)
    w = {n: rnd(o, i, scale=i ** -0.5) for n, (o, i) in
         {"qkv": (3 * d, d), "proj": (d, d), "fc1": (4 * d, d), "fc2": (d, 4 * d)}.items()}
    b = {n: rnd(t.shape[0]) for n, t in w.items()}
    pre = rnd(tokens, 4 * d)
    grad = rnd(tokens, d)
    mm = lambda o, i: 2 * tokens * o * i
    return [
        ("qkv", mm(3 * d, d), lambda: F.linear(x, w["qkv"], b["qkv"]), lambda: cublaslt.linear_bias(x, w["qkv"], b["qkv"])),
        ("proj", mm(d, d), lambda: F.linear(x, w["proj"], b["proj"]), lambda: cublaslt.linear_bias(x, w["proj"], b["proj"])),
        ("fc1+gelu", mm(4 * d, d), lambda: torch._addmm_activation(b["fc1"], x, w["fc1"].t(), use_gelu=True),
         lambda: cublaslt.linear_gelu(x, w["fc1"], b["fc1"])),
        ("fc2", mm(d, 4 * d), lambda: F.linear(x4, w["fc2"], b["fc2"]), lambda: cublaslt.linear_bias(x4, w["fc2"], b["fc2"])),
        ("train fc1+gelu+aux", mm(4 * d, d),
         lambda: F.gelu(F.linear(x, w["fc1"], b["fc1"]), approximate="tanh"),
         lambda: cublaslt.linear_gelu_aux(x, w["fc1"], b["fc1"])),
        ("train dgelu, sum", mm(4 * d, d),
         lambda: (lambda gp: (gp, gp.sum(0)))(torch.ops.aten.gelu_backward(grad @ w["fc2"], pre, approximate="tanh")),
         lambda: (lambda gp: (gp, gp.sum(0)))(cublaslt.matmul_dgelu(grad, w["fc2"], pre))),
        ("train dgelu+bgrad", mm(4 * d, d),
         lambda: (lambda gp: (gp, gp.sum(0)))(torch.ops.aten.gelu_backward(grad @ w["fc2"], pre, approximate="tanh")),
         lambda: cublaslt.matmul_dgelu_bgrad(grad, w["fc2"], pre)),
    ]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_args(ap, iters=20)
    args = ap.parse_args(argv)
    pairs, device, dtype = shape_setup(ap, args, f"; cuBLASLt found: {cublaslt.available()}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{'arch':10} {'gemm':20} {'tokens':>7} {'pytorch ms':>10} {'lt first':>9} {'lt tuned':>9} "
          f"{'tuned TF/s':>10} {'vs pytorch':>10} {'picked':>8}")
    for arch, batch in pairs:
        cfg = get_preset(arch, input_size=args.input_size, in_channels=4)
        tokens = batch * (args.input_size // cfg.patch_size) ** 2
        for gemm, flops, ref, lt in cases(tokens, cfg.hidden_size, device, dtype):
            t_ref = 1e3 * median_time(ref, args.iters, device, warmup=3)
            cublaslt.reset()
            cublaslt.autotune = False
            t_first = 1e3 * median_time(lt, args.iters, device, warmup=3)
            cublaslt.reset()
            cublaslt.autotune = True
            t_tuned = 1e3 * median_time(lt, args.iters, device, warmup=3)
            picked = next(iter(cublaslt.choices.values()), {})
            label = f"{picked.get('picked', '-')}/{picked.get('candidates', '-')}"
            row = {"arch": arch, "batch": batch, "gemm": gemm, "tokens": tokens, "pytorch_ms": t_ref,
                   "lt_first_ms": t_first, "lt_tuned_ms": t_tuned, "flops": flops, "picked": picked, "device": name}
            print(f"{arch:10} {gemm:20} {tokens:7d} {t_ref:10.4f} {t_first:9.4f} {t_tuned:9.4f} "
                  f"{flops / t_tuned / 1e9:10.1f} {t_ref / t_tuned:9.3f}x {label:>8}")
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row, default=str) + "\n")


if __name__ == "__main__":
    main()
