"""Training throughput of DiT experts: images/s and model-FLOPs utilisation, beside an fp32 eager baseline.

    python benchmarks/train_throughput.py --arch DiT-B/2 --arch DiT-XL/2 --batch 256 --steps 50 --compile --dtype bf16

Each configuration times full training steps (the project's loss, backward, grad clipping, fused AdamW,
EMA) on random 32×32×4 latents after ``--warmup`` untimed steps, with ``torch.cuda.synchronize()`` only
around the timed loop (no host syncs inside it). The baseline runs the same model in the same process in
plain fp32, eager, TF32 off. MFU = (analytic training FLOPs per image × images/s) / dense bf16 peak,
FLOPs from ``hddm_p2p.models.flops`` (2 per multiply-add, backward = 2× forward). Out-of-memory at a
batch size is reported, not fatal.
"""

from __future__ import annotations

import argparse
import time

import torch

from hddm_p2p.models import build_dit, get_preset
from hddm_p2p.models.flops import dit_flops
from hddm_p2p.train.loop import EMA
from hddm_p2p.train.objectives import ObjectiveConfig, diffusion_loss

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s.
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0,
                    "A10G": 125.0, "RTX 4090": 165.0}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def time_training(arch: str, batch: int, steps: int, warmup: int, device: torch.device, dtype: str,
                  compile: bool) -> dict:
    """Seconds per step and images/s of ``steps`` timed training steps."""
    torch.backends.cuda.matmul.allow_tf32 = dtype != "fp32"
    torch.backends.cudnn.allow_tf32 = dtype != "fp32"
    torch.manual_seed(0)
    cfg = get_preset(arch, input_size=32, in_channels=4)
    model = build_dit(cfg).to(device)
    fwd = torch.compile(model) if compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    ema = EMA(model, 0.9999)
    obj = ObjectiveConfig("fm", "flow-linear")
    gen = torch.Generator(device).manual_seed(0)
    x0 = torch.randn(batch, 4, 32, 32, device=device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")

    def step(i: int):
        with amp:
            loss = diffusion_loss(fwd, x0, None, obj, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model, i)

    for i in range(warmup):
        step(i)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    _sync(device)
    dt = time.perf_counter() - t0
    return {"arch": arch, "mode": f"{dtype}{' compiled' if compile else ' eager'}", "batch": batch,
            "s_per_step": dt / steps, "images_per_s": batch * steps / dt, "train_flops": dit_flops(cfg, training=True)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_one(arch, batch, steps, warmup, device, dtype, compile) -> dict:
    try:
        return time_training(arch, batch, steps, warmup, device, dtype, compile)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"arch": arch, "mode": f"{dtype}{' compiled' if compile else ' eager'}", "batch": batch, "oom": True}


def report(rows: list[dict], peak: float | None) -> None:
    print(f"{'arch':10} {'mode':16} {'batch':>5} {'s/step':>9} {'img/s':>10} {'TFLOP/s':>9} {'MFU':>7} {'speedup':>8}")
    base = {}
    for r in rows:
        if r.get("oom"):
            print(f"{r['arch']:10} {r['mode']:16} {r['batch']:>5} {'out of memory':>9}")
            continue
        tflops = r["train_flops"] * r["images_per_s"] / 1e12
        mfu = f"{100 * tflops / peak:.1f}%" if peak else "n/a"
        base.setdefault(r["arch"], r["images_per_s"])  # first row per arch is the fp32 eager baseline
        speed = r["images_per_s"] / base[r["arch"]]
        print(f"{r['arch']:10} {r['mode']:16} {r['batch']:>5} {r['s_per_step']:>9.4f} {r['images_per_s']:>10.1f} "
              f"{tflops:>9.2f} {mfu:>7} {speed:>7.2f}x")


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
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    peak = peak_tflops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; dense bf16 peak: {f'{peak:.0f} TFLOP/s' if peak else 'unknown'}")
    rows = []
    for arch in args.arch or ["DiT-B/2"]:
        if not args.no_baseline:
            rows.append(run_one(arch, args.batch, args.steps, args.warmup, device, "fp32", False))
        rows.append(run_one(arch, args.batch, args.steps, args.warmup, device, args.dtype, args.compile))
    report(rows, peak)


if __name__ == "__main__":
    main()
