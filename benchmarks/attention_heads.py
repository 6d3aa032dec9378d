"""Self-attention forward + backward at a DiT's training shapes, per SDPA backend and per head width.

    python benchmarks/attention_heads.py --arch DiT-XL/2 --batch 128 --arch DiT-B/2 --batch 256 --pad 80 --pad 96

The question it answers: DiT-XL/2's heads are 72 wide, and a flash kernel built for a 128-wide tile spends
the difference on zeros. ``--pad W`` adds rows with heads zero-padded to W (the softmax scale stays
1/√72, so the result is the same): if a padded row is faster than the real width by more than the extra
qkv/proj GEMM work padding would cost in the model, padding pays. Inputs are laid out as the model lays
them out (q, k, v are views of one (B, T, 3, H, d) projection), so the backward includes packing dq, dk, dv
back into that layout. TFLOP/s counts the real width only: 4·B·H·T²·d forward, 2.5× that backward.
``triton``: ``hddm_p2p.models.flash_attention`` (cuDNN's forward, asked for its log-sum-exp, then the Triton backward
with one program per head), which reads the packed projection and writes its gradient in place of the packing
copy, its error against fp32 SDPA printed; ``triton-blocks``: the backward with one program per (block, head);
``fa4``: cuDNN's forward then FlashAttention-4's Hopper backward (``hddm_p2p.models.fa4_attention``), which also
reads the packed projection and writes its gradient; ``fa4-forward``: FlashAttention-4's forward too. For each of
these kernels of ours, the errors of the output and of the gradient are printed, and the host's time per call.
Time: median over ``--iters`` rounds between CUDA events. On CPU: the math backend at toy size.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from _common import add_shape_args, attention_backend, median_time, shape_setup

from hddm_p2p.models import fa4_attention, flash_attention, get_preset


def attention_step(qkv: torch.Tensor, grad: torch.Tensor, scale: float) -> None:
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, T, d) views of one projection
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    out.backward(grad)


def triton_step(qkv: torch.Tensor, grad: torch.Tensor, scale: float) -> None:
    """The same through ``flash_attention``'s kernels: q, k, v read from the packed projection, dqkv written into it."""
    out = flash_attention.attention(qkv, scale=scale)  # (B, T, H, d)
    out.backward(grad.transpose(1, 2))


def kernel_error(qkv: torch.Tensor, grad: torch.Tensor, real: int) -> tuple[float, float]:
    """The relative errors (Frobenius) of the kernels' output and qkv gradient against fp32 SDPA, on the first
    eight samples."""
    x = qkv.detach()[:8].clone().requires_grad_()
    ref = x.detach().float().requires_grad_()
    g = grad[:8].transpose(1, 2)
    out = flash_attention.attention(x, scale=real ** -0.5)
    out.backward(g)
    want = flash_attention.reference(ref, scale=real ** -0.5)
    want.backward(g.float())
    return (((out.float() - want).norm() / want.norm()).item(),
            ((x.grad.float() - ref.grad).norm() / ref.grad.norm()).item())


def host_ms(fn, device, calls: int = 20) -> float:
    """Milliseconds of host time per call of ``fn``: the Python and launch work, while the GPU's queue absorbs
    the kernels (each call's kernels are far fewer than the queue holds)."""
    fn()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda device: None)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    t = time.perf_counter() - t0
    sync(device)
    return t / calls * 1e3


def time_row(batch: int, tokens: int, heads: int, width: int, real: int, backend: str, device, dtype,
             iters: int) -> float | None:
    g = torch.Generator(device).manual_seed(0)
    qkv = torch.zeros(batch, tokens, 3, heads, width, device=device, dtype=dtype)
    qkv[..., :real] = torch.randn(batch, tokens, 3, heads, real, device=device, generator=g).to(dtype)
    qkv.requires_grad_(True)
    grad = torch.randn(batch, heads, tokens, width, device=device, generator=g).to(dtype)
    grad[..., real:] = 0
    triton = backend.startswith("triton")
    ours = triton or backend.startswith("fa4")  # through flash_attention.attention, from and to the packed layout
    step = triton_step if ours else attention_step
    flash_attention.enabled = triton
    fa4_attention.enabled = backend.startswith("fa4")
    fa4_attention.forward_backend = "fa4" if backend == "fa4-forward" else "cudnn"
    flash_attention.backward = "blocks" if backend == "triton-blocks" else "head"
    flash_attention.forward_backend = "cudnn" if device.type == "cuda" else "triton"  # cuDNN's, then the Triton backward
    try:
        if backend.startswith("fa4") and not fa4_attention.usable(qkv):
            raise RuntimeError("needs FlashAttention-4 (pip install flash-attn-4) and a Hopper GPU")
        with attention_backend("auto" if ours else backend):
            t = median_time(lambda: step(qkv, grad, real ** -0.5), iters, device, warmup=3)
        if ours and width == real:
            out_err, grad_err = kernel_error(qkv, grad, real)
            print(f"  {backend} d={width}: relative error against fp32 SDPA: output {out_err:.2e}, "
                  f"gradient {grad_err:.2e}; host {host_ms(lambda: step(qkv, grad, real ** -0.5), device):.3f} "
                  "ms per forward + backward")
        return t
    except RuntimeError as e:  # this backend has no kernel for this shape/GPU
        print(f"  {backend} d={width}: unavailable ({str(e).splitlines()[0][:90]})")
        return None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_args(ap)
    ap.add_argument("--pad", action="append", type=int, default=[], help="also time heads padded to this width")
    ap.add_argument("--backends", default=None,
                    help="comma-separated: cudnn,flash,efficient,triton,triton-blocks,fa4,fa4-forward (GPU), auto (CPU)")
    args = ap.parse_args(argv)
    pairs, device, dtype = shape_setup(ap, args)
    cuda = device.type == "cuda"
    backends = (args.backends or ("cudnn,triton,flash,efficient" if cuda else "auto")).split(",")
    print(f"{'arch':10} {'batch':>5} {'heads':>5} {'d':>4} {'backend':>10} {'ms':>8} {'TFLOP/s':>8} {'vs real d':>9}")
    rows = []
    for arch, batch in pairs:
        cfg = get_preset(arch, input_size=args.input_size, in_channels=4)
        T, H = (args.input_size // cfg.patch_size) ** 2, cfg.num_heads
        real = cfg.hidden_size // H
        flops = 3.5 * 4 * batch * H * T * T * real
        for backend in backends:
            base = None
            for width in [real] + [w for w in args.pad if w > real]:
                t = time_row(batch, T, H, width, real, backend, device, dtype, args.iters)
                if t is None:
                    continue
                base = base or (t if width == real else None)
                row = {"arch": arch, "batch": batch, "heads": H, "width": width, "real_width": real,
                       "backend": backend, "seconds": t, "tflops": flops / t / 1e12,
                       "vs_real": base / t if base else None}
                rows.append(row)
                print(f"{arch:10} {batch:>5} {H:>5} {width:>4} {backend:>10} {t * 1e3:>8.3f} "
                      f"{row['tflops']:>8.1f} {row['vs_real'] or float('nan'):>8.2f}x")
    for name in ("_tuned_head", "_tuned_backward", "_tuned_forward"):  # the Triton autotuners' picks, if they ran
        for key, config in getattr(getattr(flash_attention, name, None), "cache", {}).items():
            print(f"  {name[len('_tuned_'):]} kernel picked for {key[:3]}: {config}")
    if args.json:
        with open(args.json, "a") as f:
            for r in rows:
                f.write(json.dumps({**r, "device": torch.cuda.get_device_name(device) if cuda else "cpu",
                                    "torch": torch.__version__}) + "\n")


if __name__ == "__main__":
    main()
