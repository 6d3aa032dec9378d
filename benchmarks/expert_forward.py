"""Expert forward pass (the unit of sampling cost): bf16 inference images/s and MFU of the hddm DiT
against diffusers' ``DiTTransformer2DModel`` of the same size, same GPU, same process.

    python benchmarks/expert_forward.py --arch DiT-B/2 --batch 256 --arch DiT-XL/2 --batch 128

Both models are class-conditional (1000 classes), 32×32×4 latents, patch 2, cast to bf16 (weights and
activations; no autocast), in eval mode under ``torch.inference_mode``. Rows (``--variants`` picks some):

    diffusers eager / diffusers compile      DiTTransformer2DModel (AdaLN-Zero), torch.compile(model)
    diffusers compile+cudnn                  the same with SDPA's cuDNN attention backend
    hddm eager / hddm compile                hddm DiT (AdaLN-Single), torch.compile(model); fc1 + GELU run as one
                                             cuBLASLt matmul with a GELU epilogue (``Mlp.fused_gelu``), and each
                                             residual add + LayerNorm + modulate as one Triton pass, the blocks
                                             chained so every residual is added inside one (``hddm_p2p.models.fused_norm``)
    hddm compile+lt                          qkv, proj, fc1 + GELU and fc2 through ``hddm_p2p.models.cublaslt``
                                             (the fastest of cuBLASLt's candidates, measured on first call)
                                             instead of PyTorch's call (the heuristic's first pick)
    hddm compile+graphs / diffusers compile+graphs   + CUDA graphs (``mode="reduce-overhead"``)
    hddm compile+sm90(+graphs)               fc1 + GELU as a CUTLASS kernel (``hddm_p2p.models.sm90_gemm``, Hopper
                                             only; the fastest of its tile shapes) instead of cuBLASLt's epilogue;
                                             ``+sm90all``: qkv, proj and fc2 as CUTLASS kernels too;
                                             ``+sm90res``: each gated residual added in the proj / fc2 GEMM's
                                             epilogue (``DiTBlock.forward_fused_residual``)
    hddm compile -norm                       without the fused norm (inductor fuses those steps itself)
    hddm compile -gelu                       without either fusion (GELU as a separate pass)
    hddm compile+cudnn                       + SDPA's cuDNN attention backend
    hddm compile+flash                       + FlashAttention-2 instead
    hddm compile+cudnn+graphs                + CUDA graphs (``mode="reduce-overhead"``)
    hddm compile+tuned(+graphs)              inductor's coordinate-descent tuning of its Triton kernels
                                             (the fused residual/LayerNorm/modulate passes) (+ CUDA graphs)
    hddm compile+multikernel(+tuned)         inductor's multi-kernel reductions: persistent and looped
                                             versions of each reduction, the faster picked at run time
    hddm autotune / hddm autotune+graphs     ``max-autotune-no-cudagraphs`` / ``max-autotune``
    hddm autotune+tma (-gelu)                + inductor's persistent TMA GEMM templates (Hopper); ``-gelu``
                                             leaves GELU to inductor, which may fuse it into a template's epilogue

Time: median over ``--iters`` calls measured with CUDA events after ``--warmup`` calls (wall clock on
CPU), each call synchronised; ``queued ms``: the same number of calls queued back to back between two events
(as a sampler runs its steps), divided by the count. MFU = analytic forward FLOPs (``hddm_p2p.models.flops``,
2 per multiply-add; each model's own config, so diffusers is charged its per-block AdaLN-Zero linears) ×
images/s / dense bf16 peak. The ``vs diffusers`` columns divide by the compiled diffusers row of the same arch
(the issue's target: ≥ 1.15×). With ``--profile`` each GPU row also prints its kernel time by category, the
GPU's idle gaps, and what the autotuners picked.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext

import torch
from _common import attention_backend, fresh_compiles, kernel_breakdown, peak_tflops

from hddm_p2p.models import build_dit, get_preset
from hddm_p2p.models.flops import dit_flops
from hddm_p2p.models import cublaslt, sm90_gemm
from hddm_p2p.models import fused_norm as fused_norm_kernel
from hddm_p2p.models.layers import Mlp

# name → (compile mode: None eager | "default" | a torch.compile mode, fused GELU, fused norm, SDPA backend)
VARIANTS = {
    "diffusers eager": (None, False, False, "auto"),
    "diffusers compile": ("default", False, False, "auto"),
    "diffusers compile+cudnn": ("default", False, False, "cudnn"),
    "hddm eager": (None, True, True, "auto"),
    "hddm compile -gelu": ("default", False, False, "auto"),
    "hddm compile -norm": ("default", True, False, "auto"),
    "hddm compile": ("default", True, True, "auto"),
    "hddm compile+lt": ("default", True, True, "auto"),
    "hddm compile+graphs": ("reduce-overhead", True, True, "auto"),
    "hddm compile+sm90": ("default", True, True, "auto"),
    "hddm compile+sm90+graphs": ("reduce-overhead", True, True, "auto"),
    "hddm compile+sm90all+graphs": ("reduce-overhead", True, True, "auto"),
    "hddm compile+sm90res+graphs": ("reduce-overhead", True, True, "auto"),
    "diffusers compile+graphs": ("reduce-overhead", False, False, "auto"),
    "hddm compile+cudnn": ("default", True, True, "cudnn"),
    "hddm compile+flash": ("default", True, True, "flash"),
    "hddm compile+cudnn+graphs": ("reduce-overhead", True, True, "cudnn"),
    "hddm compile+tuned": ("default", True, True, "auto"),
    "hddm compile+tuned+graphs": ("reduce-overhead", True, True, "auto"),
    "hddm compile+multikernel": ("default", True, True, "auto"),
    "hddm compile+multikernel -norm": ("default", True, False, "auto"),
    "hddm compile+multikernel+tuned": ("default", True, True, "auto"),
    "hddm autotune": ("max-autotune-no-cudagraphs", True, True, "auto"),
    "hddm autotune+tma": ("max-autotune-no-cudagraphs", True, True, "auto"),
    "hddm autotune+tma -gelu": ("max-autotune-no-cudagraphs", False, True, "auto"),
    "hddm autotune+graphs": ("max-autotune", True, True, "auto"),
}


def hddm_model(arch: str, classes: int):
    cfg = get_preset(arch, input_size=32, in_channels=4, condition="class", num_classes=classes)
    return build_dit(cfg), dit_flops(cfg)


def diffusers_model(arch: str, classes: int):
    """diffusers' DiT of the same shape; its FLOPs counted as the equivalent AdaLN-Zero hddm config."""
    from diffusers import DiTTransformer2DModel

    cfg = get_preset(arch, input_size=32, in_channels=4, condition="class", num_classes=classes, adaln="zero")
    heads = cfg.num_heads
    model = DiTTransformer2DModel(num_attention_heads=heads, attention_head_dim=cfg.hidden_size // heads,
                                  in_channels=4, out_channels=4, num_layers=cfg.depth, sample_size=32,
                                  patch_size=cfg.patch_size, num_embeds_ada_norm=classes)
    return model, dit_flops(cfg)


def _call(kind: str, model, x, t, y):
    if kind == "diffusers":
        return model(x, timestep=t, class_labels=y, return_dict=False)[0]
    return model(x, t, y)


def _compiled(model, variant: str):
    mode = VARIANTS[variant][0]
    return model if mode is None else torch.compile(model, mode=None if mode == "default" else mode)


def time_forward(fn, inputs, warmup: int, iters: int, device: torch.device) -> tuple[float, float]:
    """(median seconds per call, seconds spent in warm-up incl. compilation)."""
    t0 = time.perf_counter()
    for i in range(warmup):
        fn(*inputs[i % len(inputs)])
    _sync(device)
    warm = time.perf_counter() - t0
    times = []
    for i in range(iters):
        args = inputs[i % len(inputs)]  # rotate input sets so no run measures a warm cache only
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn(*args)
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) / 1e3)
        else:
            s = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - s)
    return statistics.median(times), warm


def time_back_to_back(fn, inputs, iters: int, device: torch.device) -> float:
    """Seconds per call with ``iters`` calls queued back to back and one sync at the end, as a sampler's steps
    run: the host's per-call work overlaps the GPU's, so no call waits for its own launch."""
    _sync(device)
    if device.type != "cuda":
        s = time.perf_counter()
        for i in range(iters):
            fn(*inputs[i % len(inputs)])
        return (time.perf_counter() - s) / iters
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for i in range(iters):
        fn(*inputs[i % len(inputs)])
    b.record()
    b.synchronize()
    return a.elapsed_time(b) / 1e3 / iters


def run_variant(arch: str, variant: str, batch: int, args, device: torch.device) -> dict:
    _, fused_gelu, fused_norm, backend = VARIANTS[variant]
    Mlp.fused_gelu = fused_gelu
    fused_norm_kernel.enabled = fused_norm
    cublaslt.sampling = "+lt" in variant
    sm90_gemm.enabled = "+sm90" in variant
    sm90_gemm.plain = "+sm90all" in variant
    sm90_gemm.residual = "+sm90res" in variant
    patch = {"coordinate_descent_tuning": True} if "tuned" in variant else {}
    if "multikernel" in variant:
        patch["triton.multi_kernel"] = 1
    if "+tma" in variant and hasattr(torch._inductor.config.triton, "enable_persistent_tma_matmul"):
        patch["triton.enable_persistent_tma_matmul"] = True
    tuning = torch._inductor.config.patch(patch) if patch else nullcontext()
    with tuning, attention_backend(backend if device.type == "cuda" else "auto"):
        return _run_variant(arch, variant, batch, args, device)


def _run_variant(arch: str, variant: str, batch: int, args, device: torch.device) -> dict:
    kind = variant.split(" ")[0]
    torch.manual_seed(0)
    try:
        model, flops = (diffusers_model if kind == "diffusers" else hddm_model)(arch, args.classes)
    except ImportError as e:  # diffusers missing: report the row, keep the others
        return {"arch": arch, "variant": variant, "batch": batch, "error": f"{type(e).__name__}: {e}"}
    model = model.to(device, torch.bfloat16).eval().requires_grad_(False)
    fwd = _compiled(model, variant)
    g = torch.Generator(device).manual_seed(1)
    inputs = [(torch.randn(batch, 4, 32, 32, device=device, dtype=torch.bfloat16, generator=g),
               torch.rand(batch, device=device, generator=g) * 999,
               torch.randint(0, args.classes, (batch,), device=device, generator=g)) for _ in range(3)]
    fn = torch.inference_mode()(lambda x, t, y: _call(kind, fwd, x, t, y))
    try:
        sec, warm = time_forward(fn, inputs, args.warmup, args.iters, device)
        queued = time_back_to_back(fn, inputs, args.iters, device)
        if args.profile and device.type == "cuda":
            print(f"--- {arch} {variant}, batch {batch}\n" + kernel_breakdown(lambda: fn(*inputs[0])), flush=True)
            print(tuned_picks(), flush=True)
    except torch.cuda.OutOfMemoryError:
        return {"arch": arch, "variant": variant, "batch": batch, "oom": True}
    except RuntimeError as e:  # e.g. no attention kernel for this shape under the chosen backend
        return {"arch": arch, "variant": variant, "batch": batch, "error": f"{type(e).__name__}: {str(e)[:200]}"}
    finally:
        torch._dynamo.reset()
    return {"arch": arch, "variant": variant, "batch": batch, "s_per_call": sec, "images_per_s": batch / sec,
            "flops_per_image": flops, "warmup_s": warm, "s_per_call_queued": queued}


def tuned_picks() -> str:
    """What the autotuners have picked so far in this process (their timings vary from run to run): the norm
    pass's Triton config per (width, add) and the CUTLASS tile shape per GEMM shape."""
    lines = []
    tuned = getattr(fused_norm_kernel, "_tuned_kernel", None)
    for key, config in getattr(tuned, "cache", {}).items():
        lines.append(f"  norm pass (width {key[0]}, add {key[1]}): {config}")
    for key, pick in sm90_gemm.choices.items():
        lines.append(f"  sm90 {key[0]} m={key[1]} n={key[2]} k={key[3]} batch={key[5]}: "
                     f"{sm90_gemm.CONFIGS[pick['config']]}, {pick['ms']:.3f} ms")
    return "\n".join(["autotuned:"] + lines) if lines else "autotuned: nothing"


def report(rows: list[dict], peak: float | None) -> None:
    print(f"{'arch':9} {'variant':26} {'batch':>5} {'ms/call':>9} {'img/s':>10} {'MFU':>7} {'vs diffusers':>12}"
          f" {'warmup s':>8} {'queued ms':>9} {'vs diffusers':>12}")
    for r in rows:
        if r.get("oom") or r.get("error"):
            print(f"{r['arch']:9} {r['variant']:26} {r['batch']:>5} {r.get('error') or 'out of memory'}")
            continue
        mfu = f"{100 * r['flops_per_image'] * r['images_per_s'] / 1e12 / peak:.1f}%" if peak else "n/a"
        ref = next((q for q in rows if q["arch"] == r["arch"] and q["variant"] == "diffusers compile"
                    and "images_per_s" in q), None)
        vs = f"{r['images_per_s'] / ref['images_per_s']:.3f}x" if ref else "n/a"
        vs_q = f"{ref['s_per_call_queued'] / r['s_per_call_queued']:.3f}x" if ref else "n/a"
        print(f"{r['arch']:9} {r['variant']:26} {r['batch']:>5} {1e3 * r['s_per_call']:>9.3f} "
              f"{r['images_per_s']:>10.1f} {mfu:>7} {vs:>12} {r['warmup_s']:>8.1f} "
              f"{1e3 * r['s_per_call_queued']:>9.3f} {vs_q:>12}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", action="append", help="DiT preset; repeat for several (default DiT-B/2)")
    ap.add_argument("--batch", type=int, action="append", help="batch per --arch (last one repeats; default 256)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated: {', '.join(VARIANTS)}")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="append one JSON line per row to this file")
    ap.add_argument("--profile", action="store_true", help="print each GPU row's kernel time by category")
    args = ap.parse_args(argv)
    fresh_compiles()  # each row's compile sees its own settings
    variants = args.variants.split(",")
    if bad := [v for v in variants if v not in VARIANTS]:
        raise SystemExit(f"error: unknown variant {bad[0]!r}; choose from: {', '.join(VARIANTS)}")
    device, archs = torch.device(args.device), args.arch or ["DiT-B/2"]
    batches = (args.batch or [256]) + [(args.batch or [256])[-1]] * len(archs)
    peak = peak_tflops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; dense bf16 peak: {f'{peak:.0f} TFLOP/s' if peak else 'unknown'}")
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    for arch, batch in zip(archs, batches):
        for v in variants:
            rows.append(run_variant(arch, v, batch, args, device))
            print(json.dumps(rows[-1]), flush=True)
    report(rows, peak)
    if args.json:
        with open(args.json, "a") as f:
            for r in rows:
                f.write(json.dumps({**r, "device": name, "torch": torch.__version__, "peak_tflops": peak}) + "\n")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
