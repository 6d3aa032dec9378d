"""Training throughput of DiT experts: images/s and model-FLOPs utilisation, beside an fp32 eager baseline.

    python benchmarks/train_throughput.py --arch DiT-B/2 --arch DiT-XL/2 --batch 256 --steps 50 --compile --dtype bf16
    python benchmarks/train_throughput.py --arch DiT-B/2 --batch 256 --ladder     # one row per optimisation step

Each configuration times full training steps (the project's loss, backward, grad clipping, fused AdamW,
EMA) on random 32×32×4 latents after ``--warmup`` untimed steps, with ``torch.cuda.synchronize()`` only
around the timed loop (no host syncs inside it). The baseline runs the same model in the same process in
plain fp32, eager, TF32 off. MFU = (analytic training FLOPs per image × images/s) / dense bf16 peak,
FLOPs from ``hddm_p2p.models.flops`` (2 per multiply-add, backward = 2× forward). Out-of-memory at a
batch size is reported, not fatal.

``--ladder`` adds the optimisations one at a time (each row keeps the ones above it): fp32 eager with
TF32 off → TF32 matmuls → bf16 autocast with a for-each (unfused) AdamW → fused AdamW →
``torch.compile`` of each DiT block (regional compilation: one compiled block reused by all N, so the
compile takes seconds, not minutes) → the residual stream in bf16 (``DiT.residual_dtype``: every
element-wise pass between the matmuls moves half the bytes) → the whole model compiled (fusions across
block boundaries) → inductor's coordinate-descent tuning of its Triton kernels; ``+gelu epilogues``: the
whole model compiled with the MLP's GELU and GELU' inside cuBLASLt matmul epilogues
(``hddm_p2p.models.fused_mlp``; the other rows leave GELU to inductor); ``+fused norm``: that, and each
residual add + LayerNorm + modulate pass and its backward as one Triton kernel each
(``hddm_p2p.models.fused_norm_train``; the other rows leave them to inductor); ``+coordinate descent on top``: the
``+fused norm`` row with inductor's coordinate-descent tuning; ``+cuda graphs``: the ``+fused norm`` row with
the forward and backward replayed as CUDA graphs (``mode="reduce-overhead"``); ``+clip in the step``: that row with the
gradient-clipping factor handed to the fused AdamW step instead of a pass scaling the gradients
(``hddm_p2p.train.clip``); ``+sm90 gemms`` (``and cuda graphs``): the ``+fused norm`` row (``+cuda graphs`` row)
with fc1 + GELU keeping the pre-activation and fc2's input gradient times GELU' as CUTLASS kernels
(``hddm_p2p.models.sm90_gemm``, Hopper only) instead of cuBLASLt's epilogues; ``+one graph per step``: the
``+sm90 gemms`` row with the whole step — forward, backward, clipping, the capturable fused AdamW, EMA — captured
once as one CUDA graph and replayed (CPU: as the row above); ``+triton attention``: the ``+sm90 gemms`` row with
self-attention through ``hddm_p2p.models.flash_attention``'s Triton kernels on the packed qkv projection instead of
SDPA where the library's default puts them (``enabled = "auto"``: Hopper, power-of-two head widths; DiT-XL/2's
72-wide heads stay on SDPA; CPU: as the row above); ``+bias grads in kernels``: that row with the bias gradients of qkv, proj and fc2
summed inside the kernels that already read their output gradients (the attention backward, the norm
backward) instead of separate reductions (the library's default; the rows above turn
it off); ``+triton forward and blocks backward``: that row with the attention's Triton forward and its backward one
program per (block, head) (``flash_attention.arrangement``), the kernels on for every head width; ``+norm sums
kernel`` / ``+bias grads and norm sums kernel``: the ``+sm90 gemms`` / ``+bias grads in kernels`` row with the norm
passes' per-sample sums added up by a kernel of ours (``fused_norm_train.sums_kernel``); ``+fp32 weight grads``
(``+norm sums kernel and fp32 weight grads``): the ``+sm90 gemms`` (``+norm sums kernel``) row with every linear
layer's weight gradient written by its GEMM in fp32 (``hddm_p2p.models.weight_grads``); ``+combo kernels``: the
``+sm90 gemms`` row with inductor's ``combo_kernels`` (independent small kernels launched as one: 1,082 → 411
launches per DiT-XL/2 step in ``benchmarks/inductor_kernels.py``'s listing); ``+sums kernel and fp32 grads and
combo kernels``: the three together; ``+norm bias grads``: the ``+norm sums kernel`` row with proj's and fc2's
bias gradients from the norm backward (``fused_norm_train.bias_grads``; attention stays on SDPA: the library's
default for DiT-XL/2); ``+transposed weight grads``: that row with fc2's weight gradient as the transposed product
(``hddm_p2p.models.weight_grads.transposed``); ``+qkv bias algebra``: that row with the qkv
bias's gradient from the algebra of attention, k's third 0 and v's from proj's (``hddm_p2p.models.qkv_bias``); ``+fa4 attention``: that
row with self-attention through FlashAttention-4's Hopper kernels where SDPA ran (``hddm_p2p.models.fa4_attention``,
the flash-attn-4 package), ``+fa4 attention in one graph`` that row's whole step captured as one CUDA graph (the
kernels' Python interface costs about 1 ms of host time per layer); ``+data from host memory`` /
``+data on the GPU``: the ``+gelu epilogues`` row fed by the training loop's own source (``MemorySource``) over
50,000 precomputed fp16 latents, each batch copied from host memory, or gathered on the GPU where the source
keeps them (every other row reuses one latent batch already on the GPU); ``+multi-kernel``: each
reduction (LayerNorm...) generated persistent and looped, the faster picked at run time. Attention goes through
SDPA's default backend (cuDNN on Hopper with torch 2.11) unless a row names one (``+cudnn attention``,
``+flash attention``: FlashAttention-2). ``+autotune blocks``/``+autotune model`` try ``max-autotune-no-cudagraphs``
(Triton GEMM templates with fused epilogues). ``--variants`` picks a subset by name (see ``LADDER``);
``--profile`` prints each row's GPU time by kernel category (matmul, attention, Triton element-wise...).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

from contextlib import nullcontext

import torch
from _common import attention_backend, fresh_compiles, kernel_breakdown, peak_tflops

from hddm_p2p.models import (build_dit, fa4_attention, flash_attention, fused_norm_train, get_preset, qkv_bias,
                             sm90_gemm, weight_grads)
from hddm_p2p.train.data import InMemoryData, MemorySource
from hddm_p2p.models.flops import dit_flops
from hddm_p2p.models.layers import Mlp
from hddm_p2p.train.clip import clipped_step
from hddm_p2p.train.loop import EMA
from hddm_p2p.train.objectives import ObjectiveConfig, diffusion_loss


@dataclass(frozen=True)
class Variant:
    """One training configuration; ``compile`` is None (eager), "blocks" (regional) or "model"."""

    name: str
    dtype: str = "bf16"            # "fp32" | "tf32" | "bf16" (autocast)
    fused_adam: bool = True
    compile: str | None = None
    mode: str | None = None        # torch.compile mode
    residual: str = "fp32"         # residual stream under bf16 autocast: "fp32" (DiT's) | "bf16"
    attention: str = "auto"        # SDPA backend: "auto" | "cudnn" | "flash"
    inductor: tuple = ()           # inductor config overrides, (("coordinate_descent_tuning", True),)
    gelu_epilogues: bool = False   # the MLP's GELU inside cuBLASLt epilogues (``hddm_p2p.models.fused_mlp``)
    fused_norm: bool = False       # the norm passes' Triton forward + backward (``hddm_p2p.models.fused_norm_train``)
    sm90: bool = False             # the MLP's epilogue GEMMs as CUTLASS kernels (``hddm_p2p.models.sm90_gemm``)
    clip: str = "separate"         # "separate": ``clip_grad_norm_`` | "fold": the factor passed to the fused
                                   # AdamW step (``hddm_p2p.train.clip``; the training loop's default)
    triton_attention: bool = False  # self-attention through ``hddm_p2p.models.flash_attention``'s Triton kernels
    bias_grads: bool = False       # the linear layers' bias gradients summed inside the kernels that already read
                                   # their output gradients (``bias_grads`` of fused_norm_train and flash_attention)
                                   # instead of separate reductions
    attention_arrangement: tuple = ("auto", "auto")  # ``flash_attention``'s (forward_backend, backward)
    sums_kernel: bool = False      # the norm passes' per-sample sums added up by a kernel of ours
                                   # (``fused_norm_train.sums_kernel``), not by inductor's code
    fp32_weight_grads: bool = False  # the linear layers' weight gradients written by their GEMMs in fp32
                                     # (``weight_grads.enabled``), not cast from bf16 by a kernel after them
    qkv_bias_algebra: bool = False  # the qkv bias's gradient from the algebra of attention (``qkv_bias.enabled``)
    transposed_grads: bool = False  # half weight gradients with fewer outputs than inputs (fc2) as (xᵀ·g)ᵀ
                                    # (``weight_grads.transposed``)
    fa4_attention: bool = False    # self-attention where SDPA would run through FlashAttention-4's kernels
                                   # (``hddm_p2p.models.fa4_attention``; needs the flash-attn-4 package)
    step_graph: bool = False       # the whole step (forward, backward, clipping, AdamW, EMA) as one CUDA graph
    data: str = "synthetic"        # "synthetic": one latent batch on the GPU | "host" / "resident": batches drawn
                                   # by the training loop's ``MemorySource`` from 50,000 fp16 latents in host memory
                                   # (copied every step) or kept on the GPU (``MemorySource.to``)

    @property
    def label(self) -> str:
        return self.name


LADDER: dict[str, Variant] = {v.name: v for v in [
    Variant("fp32 eager", "fp32", fused_adam=False),
    Variant("tf32 eager", "tf32", fused_adam=False),
    Variant("bf16 eager", "bf16", fused_adam=False),
    Variant("+fused adamw", "bf16"),
    Variant("+compile blocks", "bf16", compile="blocks"),
    Variant("+bf16 residual", "bf16", compile="blocks", residual="bf16"),
    Variant("+cudnn attention", "bf16", compile="blocks", residual="bf16", attention="cudnn"),
    Variant("+compile model", "bf16", compile="model", residual="bf16"),
    Variant("+gelu epilogues", "bf16", compile="model", residual="bf16", gelu_epilogues=True),
    Variant("+fused norm", "bf16", compile="model", residual="bf16", gelu_epilogues=True, fused_norm=True),
    Variant("+clip in the step", "bf16", compile="model", residual="bf16", gelu_epilogues=True, fused_norm=True,
            clip="fold"),
    Variant("+sm90 gemms", "bf16", compile="model", residual="bf16", gelu_epilogues=True, fused_norm=True,
            sm90=True),
    Variant("+triton attention", "bf16", compile="model", residual="bf16", gelu_epilogues=True, fused_norm=True,
            sm90=True, triton_attention=True),
    Variant("+bias grads in kernels", "bf16", compile="model", residual="bf16", gelu_epilogues=True, fused_norm=True,
            sm90=True, triton_attention=True, bias_grads=True),
    Variant("+triton forward and blocks backward", "bf16", compile="model", residual="bf16", gelu_epilogues=True,
            fused_norm=True, sm90=True, triton_attention=True, bias_grads=True,
            attention_arrangement=("triton", "blocks")),
    Variant("+norm sums kernel", "bf16", compile="model", residual="bf16", gelu_epilogues=True, fused_norm=True,
            sm90=True, sums_kernel=True),
    Variant("+fp32 weight grads", "bf16", compile="model", residual="bf16", gelu_epilogues=True, fused_norm=True,
            sm90=True, fp32_weight_grads=True),
    Variant("+norm sums kernel and fp32 weight grads", "bf16", compile="model", residual="bf16",
            gelu_epilogues=True, fused_norm=True, sm90=True, sums_kernel=True, fp32_weight_grads=True),
    Variant("+combo kernels", "bf16", compile="model", residual="bf16", gelu_epilogues=True, fused_norm=True,
            sm90=True, inductor=(("combo_kernels", True),)),
    Variant("+sums kernel and fp32 grads and combo kernels", "bf16", compile="model", residual="bf16",
            gelu_epilogues=True, fused_norm=True, sm90=True, sums_kernel=True, fp32_weight_grads=True,
            inductor=(("combo_kernels", True),)),
    Variant("+bias grads and norm sums kernel", "bf16", compile="model", residual="bf16", gelu_epilogues=True,
            fused_norm=True, sm90=True, triton_attention=True, bias_grads=True, sums_kernel=True),
    Variant("+norm bias grads", "bf16", compile="model", residual="bf16", gelu_epilogues=True, fused_norm=True,
            sm90=True, sums_kernel=True, bias_grads=True),
    Variant("+transposed weight grads", "bf16", compile="model", residual="bf16", gelu_epilogues=True,
            fused_norm=True, sm90=True, sums_kernel=True, bias_grads=True, transposed_grads=True),
    Variant("+qkv bias algebra", "bf16", compile="model", residual="bf16", gelu_epilogues=True, fused_norm=True,
            sm90=True, sums_kernel=True, bias_grads=True, transposed_grads=True, qkv_bias_algebra=True),
    Variant("+fa4 attention", "bf16", compile="model", residual="bf16", gelu_epilogues=True, fused_norm=True,
            sm90=True, sums_kernel=True, bias_grads=True, transposed_grads=True, qkv_bias_algebra=True,
            fa4_attention=True),
    Variant("+fa4 attention in one graph", "bf16", compile="model", residual="bf16", gelu_epilogues=True,
            fused_norm=True, sm90=True, sums_kernel=True, bias_grads=True, transposed_grads=True,
            qkv_bias_algebra=True, fa4_attention=True, step_graph=True),
    Variant("+sm90 gemms and cuda graphs", "bf16", compile="model", mode="reduce-overhead", residual="bf16",
            gelu_epilogues=True, fused_norm=True, sm90=True),
    Variant("+cuda graphs", "bf16", compile="model", mode="reduce-overhead", residual="bf16", gelu_epilogues=True,
            fused_norm=True),
    Variant("+one graph per step", "bf16", compile="model", residual="bf16", gelu_epilogues=True, fused_norm=True,
            sm90=True, step_graph=True),
    Variant("+cuda graphs and coordinate descent", "bf16", compile="model", mode="reduce-overhead", residual="bf16",
            gelu_epilogues=True, fused_norm=True, inductor=(("coordinate_descent_tuning", True),)),
    Variant("+coordinate descent on top", "bf16", compile="model", residual="bf16", gelu_epilogues=True,
            fused_norm=True, inductor=(("coordinate_descent_tuning", True),)),
    Variant("+data from host memory", "bf16", compile="model", residual="bf16", gelu_epilogues=True, data="host"),
    Variant("+data on the GPU", "bf16", compile="model", residual="bf16", gelu_epilogues=True, data="resident"),
    Variant("+flash attention", "bf16", compile="model", residual="bf16", attention="flash"),
    Variant("+coordinate descent", "bf16", compile="model", residual="bf16",
            inductor=(("coordinate_descent_tuning", True),)),
    Variant("+multi-kernel", "bf16", compile="model", residual="bf16", inductor=(("triton.multi_kernel", 1),)),
    Variant("+autotune blocks", "bf16", compile="blocks", mode="max-autotune-no-cudagraphs"),
    Variant("+autotune model", "bf16", compile="model", mode="max-autotune-no-cudagraphs"),
]}


def _compiled(model: torch.nn.Module, v: Variant):
    """The callable to train: the model, the model with each block compiled in place, or compiled whole."""
    if v.compile == "blocks":
        for block in model.blocks:
            block.compile(mode=v.mode)
        return model
    if v.compile == "model":
        return torch.compile(model, mode=v.mode)
    return model


def time_training(arch: str, batch: int, steps: int, warmup: int, device: torch.device, dtype: str,
                  compile: bool, variant: Variant | None = None, profile: bool = False) -> dict:
    """Seconds per step and images/s of ``steps`` timed training steps (``variant`` overrides dtype/compile)."""
    v = variant or Variant(f"{dtype}{' compiled' if compile else ' eager'}", dtype, device.type == "cuda",
                           "model" if compile else None)
    tuning = torch._inductor.config.patch(dict(v.inductor)) if v.inductor else nullcontext()
    with tuning, attention_backend(v.attention if device.type == "cuda" else "auto"):
        return _time_training(arch, batch, steps, warmup, device, v, profile)


def _time_training(arch: str, batch: int, steps: int, warmup: int, device: torch.device, v: Variant,
                   profile: bool) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = v.dtype != "fp32"
    Mlp.fused_gelu_training = v.gelu_epilogues
    fused_norm_train.enabled = v.fused_norm and device.type == "cuda"
    sm90_gemm.enabled = v.sm90 and device.type == "cuda"
    forced = v.attention_arrangement != ("auto", "auto")  # a named arrangement runs at every head width
    flash_attention.enabled = v.triton_attention and device.type == "cuda" and (True if forced else "auto")
    fused_norm_train.bias_grads = flash_attention.bias_grads = v.bias_grads
    fused_norm_train.sums_kernel = v.sums_kernel
    weight_grads.enabled = v.fp32_weight_grads
    weight_grads.transposed = v.transposed_grads
    qkv_bias.enabled = v.qkv_bias_algebra
    fa4_attention.enabled = v.fa4_attention and device.type == "cuda"
    if fa4_attention.enabled and not fa4_attention.installed():
        raise RuntimeError("the +fa4 attention row needs FlashAttention-4: pip install flash-attn-4")
    flash_attention.forward_backend, flash_attention.backward = v.attention_arrangement
    torch.backends.cudnn.allow_tf32 = v.dtype != "fp32"
    torch.manual_seed(0)
    cfg = get_preset(arch, input_size=32, in_channels=4)
    model = build_dit(cfg).to(device)
    model.residual_dtype = torch.bfloat16 if v.residual == "bf16" and v.dtype == "bf16" else None
    fwd = _compiled(model, v)
    graphed = v.step_graph and device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=v.fused_adam, foreach=not v.fused_adam,
                            capturable=graphed)
    ema = EMA(model, 0.9999)
    obj = ObjectiveConfig("fm", "flow-linear")
    gen = torch.Generator(device).manual_seed(0)
    x0 = torch.randn(batch, 4, 32, 32, device=device)
    source = latent_source(batch, device) if v.data in ("host", "resident") else None
    if source is not None and v.data == "resident" and not source.to(device):
        raise RuntimeError("the latents stay in host memory: no GPU, or they do not fit on it")
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=v.dtype == "bf16")

    def step(i: int):
        if v.mode == "reduce-overhead":  # the graphs' outputs of the step before are no longer needed
            torch.compiler.cudagraph_mark_step_begin()
        x = source.next().model_input(device) if source is not None else x0
        with amp:
            loss = diffusion_loss(fwd, x, None, obj, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with clipped_step(opt, model.parameters(), 1.0, fold=v.clip == "fold"):
            opt.step()
        ema.update(model, i)

    t0 = time.perf_counter()
    if graphed:
        step = _captured(step, gen, warmup)
    for i in range(warmup):
        step(i)
    _sync(device)
    warm_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    _sync(device)
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    if profile and device.type == "cuda":
        print(f"--- {arch} {v.label}, batch {batch}\n" + kernel_breakdown(lambda: step(0), top=30), flush=True)
    return {"arch": arch, "mode": v.label, "batch": batch, "s_per_step": dt / steps, "images_per_s": batch * steps / dt,
            "train_flops": dit_flops(cfg, training=True), "warmup_s": warm_s, "peak_gib": peak}


def _captured(step, gen: torch.Generator, warmup: int):
    """``step`` run ``warmup`` times on a side stream (compiling, autotuning, allocating), then captured once as a
    CUDA graph; returns a step that replays it. The graph advances ``gen`` as the eager step would; what the
    step computed on the host is fixed at capture (the EMA decay of step ``warmup``)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(warmup):
            step(i)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    graph.register_generator_state(gen)
    with torch.cuda.graph(graph):
        step(warmup)
    return lambda i: graph.replay()


def latent_source(batch: int, device: torch.device, n: int = 50_000) -> MemorySource:
    """The training loop's in-memory source over ``n`` fp16 latents (4×32×32, CIFAR-10's size in SD's VAE
    space), at most 8 batches of them on the CPU."""
    n = n if device.type == "cuda" else min(n, 8 * batch)
    g = torch.Generator().manual_seed(0)
    data = InMemoryData(torch.randn(n, 4, 32, 32, generator=g).half(), torch.full((n,), -1), [""] * n,
                        [str(i) for i in range(n)], "latent", "synthetic latents")
    return MemorySource(data, batch, seed=0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_one(arch, batch, steps, warmup, device, dtype, compile, variant: Variant | None = None,
            profile: bool = False) -> dict:
    try:
        return time_training(arch, batch, steps, warmup, device, dtype, compile, variant, profile)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        mode = variant.label if variant else f"{dtype}{' compiled' if compile else ' eager'}"
        return {"arch": arch, "mode": mode, "batch": batch, "oom": True}
    except RuntimeError as e:  # e.g. no attention kernel for this shape under the chosen backend
        mode = variant.label if variant else f"{dtype}{' compiled' if compile else ' eager'}"
        return {"arch": arch, "mode": mode, "batch": batch, "error": f"{type(e).__name__}: {str(e)[:200]}"}
    finally:
        torch._dynamo.reset()  # drop compiled graphs (and the models they hold) before the next variant
        if device.type == "cuda":
            torch.cuda.empty_cache()


def report(rows: list[dict], peak: float | None) -> None:
    w = max([21] + [len(r["mode"]) for r in rows])
    print(f"{'arch':10} {'mode':{w}} {'batch':>5} {'s/step':>9} {'img/s':>10} {'TFLOP/s':>9} {'MFU':>7} {'speedup':>8}"
          f" {'peak GiB':>8} {'warmup s':>8}")
    base = {}
    for r in rows:
        if r.get("oom") or r.get("error"):
            print(f"{r['arch']:10} {r['mode']:{w}} {r['batch']:>5} {r.get('error') or 'out of memory'}")
            continue
        tflops = r["train_flops"] * r["images_per_s"] / 1e12
        mfu = f"{100 * tflops / peak:.1f}%" if peak else "n/a"
        base.setdefault(r["arch"], r["images_per_s"])  # first row per arch is the fp32 eager baseline
        speed = r["images_per_s"] / base[r["arch"]]
        print(f"{r['arch']:10} {r['mode']:{w}} {r['batch']:>5} {r['s_per_step']:>9.4f} {r['images_per_s']:>10.1f} "
              f"{tflops:>9.2f} {mfu:>7} {speed:>7.2f}x {r['peak_gib']:>8.2f} {r['warmup_s']:>8.1f}", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", action="append", help="DiT preset; repeat for several (default DiT-B/2)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--no-baseline", action="store_true", help="skip the fp32 eager run")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--ladder", action="store_true", help="one row per optimisation step (see LADDER)")
    ap.add_argument("--variants", help=f"comma-separated subset of the ladder: {', '.join(LADDER)}")
    ap.add_argument("--baseline-batch", type=int, help="batch of the fp32/tf32 eager rows (default: --batch)")
    ap.add_argument("--json", help="append one JSON line per row to this file")
    ap.add_argument("--profile", action="store_true", help="print each GPU row's kernel time by category")
    args = ap.parse_args(argv)
    fresh_compiles()  # each row's compile sees its own settings
    device = torch.device(args.device)
    peak = peak_tflops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; dense bf16 peak: {f'{peak:.0f} TFLOP/s' if peak else 'unknown'}")
    rows = []
    for arch in args.arch or ["DiT-B/2"]:
        if args.ladder or args.variants:
            rows += run_ladder(arch, args, device, peak)
            continue
        if not args.no_baseline:
            rows.append(run_one(arch, args.batch, args.steps, args.warmup, device, "fp32", False))
        rows.append(run_one(arch, args.batch, args.steps, args.warmup, device, args.dtype, args.compile))
    report(rows, peak)
    if args.json:
        with open(args.json, "a") as f:
            for r in rows:
                f.write(json.dumps({**r, "device": name, "torch": torch.__version__, "peak_tflops": peak}) + "\n")


def run_ladder(arch: str, args, device: torch.device, peak: float | None) -> list[dict]:
    """The selected ladder rows for one arch; fp32/tf32 rows at ``--baseline-batch``; each row printed as it ends."""
    names = args.variants.split(",") if args.variants else list(LADDER)
    unknown = [n for n in names if n not in LADDER]
    if unknown:
        raise SystemExit(f"error: unknown variant {unknown[0]!r}; choose from: {', '.join(LADDER)}")
    rows = []
    for n in names:
        v = LADDER[n]
        batch = (args.baseline_batch or args.batch) if v.dtype in ("fp32", "tf32") else args.batch
        steps = max(2, args.steps // 4) if v.dtype in ("fp32", "tf32") else args.steps
        rows.append(run_one(arch, batch, steps, args.warmup, device, v.dtype, False, v,
                            args.profile and v.dtype == "bf16"))
        print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main()
