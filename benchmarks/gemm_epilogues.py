"""The matmuls of a DiT block, each through PyTorch, through ``hddm_p2p.models.cublaslt`` (cuBLASLt with
the heuristic's first algorithm, and with the fastest of its candidates) and through ``sm90_gemm``
(CUTLASS kernels with the same epilogues, fastest tile shape), same GPU, same process.

    python benchmarks/gemm_epilogues.py --arch DiT-XL/2 --batch 128 --arch DiT-B/2 --batch 256

Rows per (arch, batch): the four sampling GEMMs (qkv, proj, fc1 + bias + GELU, fc2; and fc1 without the
GELU, for scale) and the training MLP's epilogue GEMMs — fc1 keeping the pre-activation (GELU_AUX_BIAS),
fc2's input gradient times GELU'(pre) (DGELU) with fc1's bias gradient summed after it, and the same with the
sum in the epilogue (DGELU_BGRAD). The PyTorch column runs what a model without this module runs:
``F.linear``, ``torch._addmm_activation`` (cuBLASLt's GELU epilogue, first heuristic pick), or the matmul and
``gelu``/``gelu_backward`` as separate kernels. The ``sm90`` columns (when ``sm90_gemm.available()``) give its
time, the tile shape it picked and its largest relative error against the PyTorch column's output. Time:
median of ``--iters`` calls (CUDA events) after warm-up; TFLOP/s counts the matmul only (2 per
multiply-add). On CPU it runs the ops' PyTorch fallbacks.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from _common import add_shape_args, median_time, shape_setup

from hddm_p2p.models import cublaslt, get_preset, sm90_gemm


def _sm90_available() -> bool:
    """Whether ``sm90_gemm`` runs here (the module switch stays off, so the cuBLASLt column is cuBLASLt)."""
    sm90_gemm.enabled = True
    try:
        return sm90_gemm.available()
    finally:
        sm90_gemm.enabled = False


def _sm90(epilogue, x, w, bias=None, aux=False, pre=None, bias_grad=False):
    """An ``sm90_gemm`` call shaped like the other columns' (None where the library is not available)."""
    if not _sm90_available() or not sm90_gemm.has(epilogue):
        return None
    def run():
        if aux:
            keep = torch.empty(x.shape[0], w.shape[0], dtype=x.dtype, device=x.device)
            return sm90_gemm.gemm(x, w, epilogue=epilogue, bias=bias, aux=keep), keep
        out = sm90_gemm.gemm(x, w, epilogue=epilogue, bias=bias, aux=pre)
        return (out, out.sum(0)) if bias_grad else out
    return run


def cases(tokens: int, d: int, device, dtype):
    """(name, flops, pytorch fn, cublaslt fn, sm90 fn or None) per GEMM of one block, ``tokens`` rows, width d."""
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

    def plain(name, inp, layer):
        wl, bl = w[layer], b[layer]
        return (name, mm(*wl.shape), lambda: F.linear(inp, wl, bl), lambda: cublaslt.linear_bias(inp, wl, bl),
                _sm90("bias", inp, wl, bl))

    return [
        plain("qkv", x, "qkv"),
        plain("proj", x, "proj"),
        ("fc1+gelu", mm(4 * d, d), lambda: torch._addmm_activation(b["fc1"], x, w["fc1"].t(), use_gelu=True),
         lambda: cublaslt.linear_gelu(x, w["fc1"], b["fc1"]), _sm90("gelu_bias", x, w["fc1"], b["fc1"])),
        plain("fc1 plain", x, "fc1"),
        plain("fc2", x4, "fc2"),
        ("train fc1+gelu+aux", mm(4 * d, d),
         lambda: (lambda p: (F.gelu(p, approximate="tanh"), p))(F.linear(x, w["fc1"], b["fc1"])),
         lambda: cublaslt.linear_gelu_aux(x, w["fc1"], b["fc1"]),
         _sm90("gelu_aux_bias", x, w["fc1"], b["fc1"], aux=True)),
        ("train dgelu, sum", mm(4 * d, d),
         lambda: (lambda gp: (gp, gp.sum(0)))(torch.ops.aten.gelu_backward(grad @ w["fc2"], pre, approximate="tanh")),
         lambda: (lambda gp: (gp, gp.sum(0)))(cublaslt.matmul_dgelu(grad, w["fc2"], pre)),
         _sm90("dgelu", grad, w["fc2"], pre=pre, bias_grad=True)),
        ("train dgelu+bgrad", mm(4 * d, d),
         lambda: (lambda gp: (gp, gp.sum(0)))(torch.ops.aten.gelu_backward(grad @ w["fc2"], pre, approximate="tanh")),
         lambda: cublaslt.matmul_dgelu_bgrad(grad, w["fc2"], pre), None),
    ]


def _max_rel(got, ref) -> float:
    """Largest relative error (Frobenius) over the outputs of one case."""
    got = got if isinstance(got, tuple) else (got,)
    ref = ref if isinstance(ref, tuple) else (ref,)
    return max(((g.float() - r.float()).norm() / r.float().norm().clamp_min(1e-12)).item()
               for g, r in zip(got, ref))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_args(ap, iters=20)
    args = ap.parse_args(argv)
    pairs, device, dtype = shape_setup(ap, args, f"; cuBLASLt found: {cublaslt.available()}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{'arch':10} {'gemm':20} {'tokens':>7} {'pytorch ms':>10} {'lt first':>9} {'lt tuned':>9} "
          f"{'tuned TF/s':>10} {'vs pytorch':>10} {'picked':>8} "
          f"{'sm90 ms':>8} {'sm90 TF/s':>9} {'cfg':>3} {'rel err':>8}")
    for arch, batch in pairs:
        cfg = get_preset(arch, input_size=args.input_size, in_channels=4)
        tokens = batch * (args.input_size // cfg.patch_size) ** 2
        for gemm, flops, ref, lt, sm90 in cases(tokens, cfg.hidden_size, device, dtype):
            t_ref = 1e3 * median_time(ref, args.iters, device, warmup=3)
            cublaslt.reset()
            cublaslt.autotune = False
            t_first = 1e3 * median_time(lt, args.iters, device, warmup=3)
            cublaslt.reset()
            cublaslt.autotune = True
            t_tuned = 1e3 * median_time(lt, args.iters, device, warmup=3)
            picked = next(iter(cublaslt.choices.values()), {})
            label = f"{picked.get('picked', '-')}/{picked.get('candidates', '-')}"
            t_sm90 = err = None
            sm90_choice = {}
            if sm90 is not None:
                sm90_gemm.choices.clear()
                t_sm90 = 1e3 * median_time(sm90, args.iters, device, warmup=3)
                sm90_choice = next(iter(sm90_gemm.choices.values()), {})
                err = _max_rel(sm90(), ref())
            row = {"arch": arch, "batch": batch, "gemm": gemm, "tokens": tokens, "pytorch_ms": t_ref,
                   "lt_first_ms": t_first, "lt_tuned_ms": t_tuned, "flops": flops, "picked": picked, "device": name,
                   "sm90_ms": t_sm90, "sm90_choice": sm90_choice, "sm90_rel_err": err}
            sm90_cols = (f"{t_sm90:8.4f} {flops / t_sm90 / 1e9:9.1f} {sm90_choice.get('config', '-'):>3} {err:8.1e}"
                         if t_sm90 is not None else f"{'-':>8} {'-':>9} {'-':>3} {'-':>8}")
            print(f"{arch:10} {gemm:20} {tokens:7d} {t_ref:10.4f} {t_first:9.4f} {t_tuned:9.4f} "
                  f"{flops / t_tuned / 1e9:10.1f} {t_ref / t_tuned:9.3f}x {label:>8} {sm90_cols}")
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row, default=str) + "\n")


if __name__ == "__main__":
    main()
