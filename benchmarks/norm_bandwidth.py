"""Memory bandwidth of the fused residual-add + LayerNorm + modulate kernel (``hddm_p2p.models.fused_norm``)
at a DiT's sampling shapes, beside PyTorch's ``torch.add`` (2 reads, 1 write) in the same process.

    python benchmarks/norm_bandwidth.py --arch DiT-XL/2 --batch 128 --arch DiT-B/2 --batch 256

Bytes counted: the kernel reads x and y and writes x' and h (4 tensors of B·T·D); without the residual
add (the first block's first pass; every pass of a cross-attention block) it reads x and writes h (2); ``torch.add``
reads two and writes one. The signals (B, D) are not counted. Time: median over ``--iters`` rounds of ``--inner``
back-to-back calls between two CUDA events (2026-12-01 run 11 timed single calls, which measured the
launch latency — 0.18 ms for a 0.10 ms kernel — not the bandwidth).
On CPU it times the plain PyTorch path (``fused_norm.reference``) at toy size.
"""

from __future__ import annotations

import argparse
import json

import torch

from _common import add_shape_args, median_time, shape_setup

from hddm_p2p.models import fused_norm, get_preset


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_args(ap)
    ap.add_argument("--inner", type=int, default=50, help="back-to-back calls per timed round")
    args = ap.parse_args(argv)
    pairs, device, dtype = shape_setup(ap, args)
    cuda = device.type == "cuda"
    print(f"{'arch':10} {'tokens':>7} {'width':>6} {'kernel ms':>10} {'TB/s':>6} {'norm ms':>8} {'TB/s':>6} "
          f"{'add ms':>8} {'TB/s':>6} {'config':>20}")
    for arch, batch in pairs:
        cfg = get_preset(arch, input_size=args.input_size, in_channels=4)
        T, D = (args.input_size // cfg.patch_size) ** 2, cfg.hidden_size
        g = torch.Generator(device).manual_seed(0)
        x, y = (torch.randn(batch, T, D, device=device, generator=g).to(dtype) for _ in range(2))
        signals = torch.randn(batch, 6, D, device=device, generator=g).to(dtype)
        gate, shift, scale = signals[:, 2], signals[:, 0], signals[:, 1]
        op = fused_norm.add_norm_modulate if cuda else fused_norm.reference
        with torch.inference_mode():
            t_kernel = median_time(lambda: op(x, y, gate, shift, scale, 1e-6), args.iters, device, warmup=3,
                                   inner=args.inner)
            t_norm = median_time(lambda: op(x, None, None, shift, scale, 1e-6), args.iters, device, warmup=3,
                                 inner=args.inner)
            t_add = median_time(lambda: torch.add(x, y), args.iters, device, warmup=3, inner=args.inner)
        tensor = x.numel() * x.element_size()
        best = getattr(getattr(fused_norm, "_tuned_kernel", None), "best_config", None) if cuda else None
        row = {"arch": arch, "batch": batch, "tokens": batch * T, "width": D, "kernel_s": t_kernel,
               "kernel_tbs": 4 * tensor / t_kernel / 1e12, "norm_s": t_norm, "norm_tbs": 2 * tensor / t_norm / 1e12,
               "add_s": t_add, "add_tbs": 3 * tensor / t_add / 1e12,
               "config": str(best) if best else None}
        print(f"{arch:10} {batch * T:7d} {D:6d} {t_kernel * 1e3:10.4f} {row['kernel_tbs']:6.2f} {t_norm * 1e3:8.4f} "
              f"{row['norm_tbs']:6.2f} {t_add * 1e3:8.4f} "
              f"{row['add_tbs']:6.2f} {str(best or '-')[:20]:>20}")
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
