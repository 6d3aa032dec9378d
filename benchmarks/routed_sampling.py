"""Routed sampling cost: K DiT experts + a DiT router, top-2 routing, classifier-free guidance on.

    python benchmarks/routed_sampling.py --arch DiT-B/2 --experts 8 --batch 256
    python benchmarks/routed_sampling.py --arch DiT-XL/2 --experts 8 --batch 64

Experts are class-conditional hddm DiTs (10 classes, 32×32×4 latents, flow-matching velocity, bf16
weights); the router is a DiT-B/2 ``Router`` with K outputs (bf16); a fixed random offset per batch row
is added to its logits (``SpreadRouter``) so that samples spread over all K experts, as a trained
router's would (untrained, it sends every sample to the same two experts: seen on an H200).
Per-step rows are the median of ``--iters`` calls of ``Ensemble.velocity`` at t = 0.5 (CUDA events):

    reference        one router forward over B + two expert forwards over the full batch, each on 2B
                     rows (conditional + null rows): the floor for top-2 with CFG (target ≤ 1.10×)
    top-2            Ensemble(mode="top-k", k=2); "+batch-cfg": both CFG branches in one call per expert
    naive            every expert on every sample (2B rows each), combined with the same top-2 weights
    offload          top-2 with each expert a LazyExpert(offload=True): weights CPU→GPU per call (eager)

``eager`` runs the modules as they are; ``compiled`` compiles the blocks of every expert and of the router
in place (``hddm_p2p.models.compile.compile_blocks``, what ``hddm generate --compile`` does): one compiled
graph serves all 8 experts, and the batch dimension turns dynamic after the first size change. Then
``--steps`` Heun steps (2·steps − 1 velocity evaluations) are timed end to end for the fastest top-2
setting: images/s and peak GPU memory (``torch.cuda.max_memory_allocated``). ``--attention cudnn`` runs
SDPA through cuDNN's fused attention (default: PyTorch's choice).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _common import attention_backend, median_time

from hddm_p2p.diffusion import Ensemble, ExpertSpec
from hddm_p2p.models import build_dit, get_preset
from hddm_p2p.models.compile import compile_blocks
from hddm_p2p.models.router import LoadedRouter, Router, router_preset
from hddm_p2p.pipeline.lazy import LazyExpert

SPEC = ExpertSpec("velocity", "flow-linear", time_scale=1000.0)
CLASSES = 10


class SpreadRouter:
    """A fixed random preference per batch row plus a thousandth of the router's logits, so that top-2
    spreads the samples evenly over all experts (an untrained router sends nearly every sample to the
    same two or three: seen on an H200, twice); the router's forward pass, and so its cost, is unchanged."""

    def __init__(self, router: LoadedRouter, batch: int, device, scale: float = 1e-3):
        self.router, self.n_experts, self.scale = router, router.n_experts, scale
        g = torch.Generator(device).manual_seed(3)
        self.offset = torch.rand(batch, router.n_experts, device=device, generator=g)

    def __call__(self, x_t, t):
        return self.scale * self.router(x_t, t).float() + self.offset[: x_t.shape[0]]


class CastExpert:
    """``model(x, t, cond)`` with x cast to the module's dtype (the sampler integrates in float32)."""

    def __init__(self, fn, dtype: torch.dtype):
        self.fn, self.dtype = fn, dtype

    def __call__(self, x, t, cond=None):
        return self.fn(x.to(self.dtype), t, cond)


def build(args, device: torch.device, dtype: torch.dtype):
    """(expert modules on device, router module) with random weights; experts' outputs made non-zero."""
    torch.manual_seed(0)
    cfg = get_preset(args.arch, input_size=args.size, in_channels=4, condition="class", num_classes=CLASSES)
    experts = []
    with device:  # initialise on the device: 8 XL/2 experts take minutes to initialise on the host
        for _ in range(args.experts):
            m = build_dit(cfg)
            torch.nn.init.normal_(m.final_layer.linear.weight, std=0.02)
            experts.append(m.to(dtype).eval().requires_grad_(False))
        router = Router(router_preset(args.router_arch, args.experts, input_size=args.size, in_channels=4))
    torch.nn.init.normal_(router.head.linear.weight, std=1.0)
    router.head.adaLN_modulation[-1].weight.data.normal_(std=0.02)
    return experts, router.to(dtype).eval().requires_grad_(False)


def naive_velocity(ens: Ensemble, x, t, cond, cfg_scale):
    """Every expert on every sample, weighted by the same top-2 weights."""
    tt = torch.full((x.shape[0],), t, device=x.device)
    w = ens.weights(x, tt)
    u = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for i in range(len(ens)):
        u += w[:, i].view(-1, 1, 1, 1) * ens._expert_u(i, x, tt, cond, cfg_scale)
    return u


def step_rows(args, experts, router, device, dtype, compiled: bool) -> list[dict]:
    """Per-step times of reference, top-2 (± batch-cfg) and naive with eager or compiled modules."""
    tag = "compiled" if compiled else "eager"
    if compiled:
        for m in [*experts, router]:
            compile_blocks(m)
    ex = [(CastExpert(m, dtype), SPEC) for m in experts]
    route = SpreadRouter(LoadedRouter(router, [f"e{i}" for i in range(len(ex))]), args.batch, device)
    g = torch.Generator(device).manual_seed(1)
    x = torch.randn(args.batch, 4, args.size, args.size, device=device, generator=g)
    y = torch.randint(0, CLASSES, (args.batch,), device=device, generator=g)
    t = torch.full((args.batch,), 0.5, device=device)
    xx, tt, yy = torch.cat([x, x]).to(dtype), torch.cat([t, t]) * 1000, torch.cat([y, torch.full_like(y, -1)])
    plain = Ensemble(ex, route, mode="top-k", k=2)
    batched = Ensemble(ex, route, mode="top-k", k=2, batch_cfg=True)

    def reference():
        route(x, t)
        experts[0](xx, tt, yy)
        experts[1](xx, tt, yy)

    rows = []
    with torch.inference_mode():
        for name, fn in [("reference", reference),
                         ("top-2", lambda: plain.velocity(x, 0.5, y, args.cfg)),
                         ("top-2 +batch-cfg", lambda: batched.velocity(x, 0.5, y, args.cfg)),
                         ("naive", lambda: naive_velocity(batched, x, 0.5, y, args.cfg))]:
            rows.append({"row": f"{name} {tag}", "s_per_step": median_time(fn, args.iters, device)})
            print(json.dumps(rows[-1]), flush=True)
        load = (batched.weights(x, t) > 0).sum(0).tolist()
    print(f"samples per expert at t=0.5 (top-2, B={args.batch}): {load}")
    return rows


def offload_row(args, experts, router, device, dtype) -> dict:
    """Top-2 +batch-cfg with every expert offloaded to the CPU between calls (eager)."""
    cpu = [m.to("cpu") for m in experts]
    lazy = [LazyExpert(".", (lambda m: lambda p, d, dt: m)(m), device=device, offload=True) for m in cpu]
    route = SpreadRouter(LoadedRouter(router, [str(i) for i in range(len(lazy))]), args.batch, device)
    ens = Ensemble([(CastExpert(e, dtype), SPEC) for e in lazy], route, mode="top-k", k=2, batch_cfg=True)
    g = torch.Generator(device).manual_seed(1)
    x = torch.randn(args.batch, 4, args.size, args.size, device=device, generator=g)
    y = torch.randint(0, CLASSES, (args.batch,), device=device, generator=g)
    with torch.inference_mode():
        sec = median_time(lambda: ens.velocity(x, 0.5, y, args.cfg), max(2, args.iters // 4), device, warmup=1)
    for m in cpu:
        m.to(device)
    return {"row": "offload eager +batch-cfg", "s_per_step": sec, "moves": sum(e.moves for e in lazy)}


def sampling_row(args, experts, router, device, dtype, compiled: bool) -> dict:
    """Images/s and peak memory of ``--steps`` Heun steps (top-2, batch-cfg); compiled: blocks compiled by
    ``step_rows`` already."""
    route = LoadedRouter(router, [f"e{i}" for i in range(len(experts))])
    ens = Ensemble([(CastExpert(m, dtype), SPEC) for m in experts], SpreadRouter(route, args.batch, device),
                   mode="top-k", k=2, batch_cfg=True)
    g = torch.Generator(device).manual_seed(2)
    noise = torch.randn(args.batch, 4, args.size, args.size, device=device, generator=g)
    y = torch.randint(0, CLASSES, (args.batch,), device=device, generator=g)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    s = time.perf_counter()
    out = ens.sample(noise, steps=args.steps, solver="heun", cond=y, cfg_scale=args.cfg)
    _sync(device)
    sec = time.perf_counter() - s
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    assert torch.isfinite(out).all()
    return {"row": f"sample heun {args.steps} {'compiled' if compiled else 'eager'}", "seconds": sec,
            "images_per_s": args.batch / sec, "peak_gib": peak}


def report(rows: list[dict]) -> None:
    refs = {r["row"].split()[-1]: r["s_per_step"] for r in rows if r["row"].startswith("reference")}
    print(f"{'row':30} {'ms/step':>10} {'vs reference':>13}")
    for r in rows:
        if "s_per_step" in r:
            ref = refs.get(r["row"].split()[-1] if "offload" not in r["row"] else "eager")
            if "+batch-cfg" in r["row"] and "offload" in r["row"]:
                ref = refs.get("eager")
            vs = f"{r['s_per_step'] / ref:.3f}x" if ref else "n/a"
            print(f"{r['row']:30} {1e3 * r['s_per_step']:>10.2f} {vs:>13}")
        else:
            print(f"{r['row']:30} {r['seconds']:>9.2f}s {r['images_per_s']:>10.2f} img/s  peak {r['peak_gib']:.2f} GiB")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="DiT-B/2", help="expert preset")
    ap.add_argument("--router-arch", default="DiT-B/2")
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32, help="latent side (32 = 256² images)")
    ap.add_argument("--cfg", type=float, default=4.0)
    ap.add_argument("--steps", type=int, default=50, help="Heun steps of the end-to-end sample")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--modes", default="eager,compiled", help="eager and/or compiled")
    ap.add_argument("--no-offload", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--attention", default="auto", choices=["auto", "cudnn", "flash"], help="SDPA backend")
    ap.add_argument("--json", help="append one JSON line per row to this file")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; {args.experts}× {args.arch} experts + {args.router_arch} router, "
          f"batch {args.batch}, CFG {args.cfg}, {dtype}")
    experts, router = build(args, device, dtype)
    modes = args.modes.split(",")
    rows = []
    with attention_backend(args.attention if device.type == "cuda" else "auto"):
        if not args.no_offload and device.type == "cuda":  # eager modules, before any are compiled
            rows.append(offload_row(args, experts, router, device, dtype))
            print(json.dumps(rows[-1]), flush=True)
        for mode in modes:
            rows += step_rows(args, experts, router, device, dtype, mode == "compiled")
        rows.append(sampling_row(args, experts, router, device, dtype, "compiled" in modes))
    print(json.dumps(rows[-1]), flush=True)
    report(rows)
    if args.json:
        with open(args.json, "a") as f:
            for r in rows:
                f.write(json.dumps({**r, "arch": args.arch, "batch": args.batch, "device": name}) + "\n")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
