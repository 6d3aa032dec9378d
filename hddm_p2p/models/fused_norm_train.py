"""The fused residual-add + LayerNorm + modulate pass (``fused_norm``) for training: a backward kernel.

In a DiT block the pass is

    x' = x + gate·y                  (the gated residual of the branch before; optional)
    h  = LN(x')·(1 + scale) + shift  (LayerNorm without affine weights, then the block's modulation)

and its backward, given dh and the gradient dx'₀ that reaches x' from the rest of the network, is

    n = (x' − μ)·σ⁻¹,  dn = dh·(1 + scale)
    dx' = dx'₀ + σ⁻¹·(dn − mean(dn) − n·mean(dn·n))   (row means over D)
    dx = dx',  dy = gate·dx'
    dshift = Σ_T dh,  dscale = Σ_T dh·n,  dgate = Σ_T dx'·y   (per sample, summed over its T tokens)
    dbias = Σ_B gate·Σ_T dx'                                  (the bias b inside y = z + b, when given)

The last is the gradient of the bias of the linear layer that made y (attention's proj, the MLP's fc2): that
layer runs with its bias detached (``DiTBlock.forward_deferred``) and this pass hands the bias its gradient,
so the (tokens, D) gradient dy is not read again to sum it (0.6 ms per step each at DiT-XL/2 batch 128).

The forward is ``fused_norm``'s kernel, which also stores μ and σ⁻¹ (fp32, one per row). The backward is
one Triton kernel: each program takes a run of token rows of one sample, writes dx and dy row by row and
keeps the per-sample column sums in registers, written once per program and summed over programs
afterwards. It reads dh, dx'₀, x' and y once and writes dx and dy once; inductor's own backward of the
same graph reads them several times (the row statistics, then the per-sample sums). With ``sums_kernel`` a second
small kernel adds up the programs' partial sums per sample (the default). Otherwise inductor's code does it, and
inductor fuses that into the reduction over the batch that follows (the scale_shift_table's gradient): the 2.75 ms
``triton_red_fused__to_copy_add_select_stack_sum_view`` of a DiT-XL/2 step in runs 15-44. On one H200 (run 43) the
kernel took 0.96 ms instead, the element-wise time fell from 28.23 to 25.80 ms and the step from 190.2 to 189.4 ms.

``enabled`` is on by default. On one H200 (2026-12-01 runs 15 and 16, ``benchmarks/train_throughput.py``, row
``+fused norm``) it took a compiled bf16 training step from 44.2 % to 46.8 % MFU at DiT-XL/2 batch 128 and
from 40.9 % to 45.5 % at DiT-B/2 batch 256. ``add_norm_modulate`` is what the model calls: the sampling
kernel without autograd, this autograd function when ``enabled`` on CUDA, else plain PyTorch.
"""

from __future__ import annotations

import torch

from hddm_p2p.models import fused_norm

Tensor = torch.Tensor
triton = fused_norm.triton

enabled: bool = True  # training on CUDA takes the fused forward + backward kernels
bias_grads: bool = True  # with them, the passes after proj and fc2 give those layers' biases their gradients
sums_kernel: bool = True  # the programs' partial per-sample sums added up by a kernel of ours, not by inductor's
                          # code (which fused them into a 2.75 ms reduction per DiT-XL/2 step; run 43: 0.96 ms)


def usable(x: Tensor) -> bool:
    """Whether training may take the fused kernels: ``enabled``, ``fused_norm.enabled``, CUDA, Triton, and
    grad mode on (without it the sampling kernel runs)."""
    return (enabled and fused_norm.enabled and triton is not None and x.is_cuda and x.dim() == 3
            and torch.is_grad_enabled())


def takes_bias_grad(x: Tensor) -> bool:
    """Whether a pass over the residual stream x takes the training kernels, so that it can hand the bias inside
    its y the gradient (``add_norm_modulate``'s ``bias``): ``bias_grads`` and ``usable`` (which needs grad mode)."""
    return bias_grads and usable(x)


def add_norm_modulate(x: Tensor, y: Tensor | None, gate: Tensor | None, shift: Tensor, scale: Tensor,
                      eps: float, bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(x + gate·y, LN(x + gate·y)·(1 + scale) + shift), as ``fused_norm.add_norm_modulate``, with the
    training kernels where an autograd graph is recorded and ``usable``.

    ``bias``: the bias already added inside y by a linear layer that ran with it detached; its gradient comes
    from here. Only where ``takes_bias_grad(x)``, which the caller asks before making y."""
    tensors = (x, shift, scale) if y is None else (x, y, gate, shift, scale)
    if not (usable(x) and fused_norm.records_grad(*tensors, *(() if bias is None else (bias,)))):
        if bias is not None:
            raise ValueError("a bias's gradient needs the training kernels: ask takes_bias_grad(x) first")
        return fused_norm.add_norm_modulate(x, y, gate, shift, scale, eps)
    if y is None:
        return x, _NormModulate.apply(x, shift, scale, eps)
    return _AddNormModulate.apply(x, y, gate, shift, scale, bias, eps)


class _AddNormModulate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, gate, shift, scale, bias, eps):  # bias: inside y already; only its gradient is ours
        x_out, h, mean, rstd = torch.ops.hddm.add_norm_modulate_stats(x, y, gate, shift, scale, eps)
        ctx.save_for_backward(x_out, y, gate, scale, mean, rstd)
        ctx.signal_dtypes = (gate.dtype, shift.dtype, scale.dtype)
        ctx.bias_dtype = None if bias is None else bias.dtype
        return x_out, h

    @staticmethod
    def backward(ctx, grad_x_out, grad_h):
        x_out, y, gate, scale, mean, rstd = ctx.saved_tensors
        dx, dy, dshift, dscale, dgate, dsum = torch.ops.hddm.add_norm_modulate_backward(
            grad_h, grad_x_out, x_out, y, gate, scale, mean, rstd)
        g_dt, sh_dt, sc_dt = ctx.signal_dtypes
        dbias = None if ctx.bias_dtype is None else (gate.float() * dsum).sum(0).to(ctx.bias_dtype)
        return dx, dy, dgate.to(g_dt), dshift.to(sh_dt), dscale.to(sc_dt), dbias, None


class _NormModulate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, shift, scale, eps):
        h, mean, rstd = torch.ops.hddm.norm_modulate_stats(x, shift, scale, eps)
        ctx.save_for_backward(x, scale, mean, rstd)
        ctx.signal_dtypes = (shift.dtype, scale.dtype)
        return h

    @staticmethod
    def backward(ctx, grad_h):
        x, scale, mean, rstd = ctx.saved_tensors
        dx, dshift, dscale = torch.ops.hddm.norm_modulate_backward(grad_h, x, scale, mean, rstd)
        sh_dt, sc_dt = ctx.signal_dtypes
        return dx, dshift.to(sh_dt), dscale.to(sc_dt), None


def chunks_per_sample(batch: int, tokens: int, rows: int, programs: int = 512) -> int:
    """How many programs share one sample's T token rows: enough for ≈ ``programs`` programs in all (a few
    waves on an H100/H200's 132 SMs), each with at least ``rows`` rows."""
    return max(1, min(-(-programs // batch), -(-tokens // rows)))


if triton is not None:
    import triton.language as tl

    _CONFIGS = [triton.Config({"ROWS": r}, num_warps=w) for r in (1, 2, 4, 8) for w in (4, 8, 16) if r * w <= 64]
    _MIN_ROWS = 8  # every program gets at least this many rows, whichever ROWS the autotuner picks

    @triton.jit
    def _norm_modulate_backward_kernel(DH, DXO, XO, Y, GATE, SCALE, MEAN, RSTD, DX, DY, PARTIAL, T, D, chunks,
                                       stride_gate, stride_scale, RUN: tl.constexpr, HAS_ADD: tl.constexpr,
                                       BLOCK_D: tl.constexpr, ROWS: tl.constexpr):
        pid = tl.program_id(0)
        sample = pid // chunks
        cols = tl.arange(0, BLOCK_D)
        col_ok = cols < D
        scale = tl.load(SCALE + sample * stride_scale + cols, mask=col_ok, other=0.0).to(tl.float32)
        if HAS_ADD:
            gate = tl.load(GATE + sample * stride_gate + cols, mask=col_ok, other=0.0).to(tl.float32)
        sum_shift = tl.zeros([BLOCK_D], dtype=tl.float32)
        sum_scale = tl.zeros([BLOCK_D], dtype=tl.float32)
        sum_gate = tl.zeros([BLOCK_D], dtype=tl.float32)
        sum_dx = tl.zeros([BLOCK_D], dtype=tl.float32)
        start = (pid % chunks) * RUN  # RUN rows per program: a constexpr, as Triton 3.6's interpreter
        end = tl.minimum(start + RUN, T)  # cannot take a loop bound from a runtime argument
        for first in range(0, RUN, ROWS):
            t = start + first + tl.arange(0, ROWS)
            row_ok = t < end
            rows = sample * T + t
            offsets = rows[:, None].to(tl.int64) * D + cols[None, :]
            mask = row_ok[:, None] & col_ok[None, :]
            dh = tl.load(DH + offsets, mask=mask, other=0.0).to(tl.float32)
            mean = tl.load(MEAN + rows, mask=row_ok, other=0.0)
            rstd = tl.load(RSTD + rows, mask=row_ok, other=0.0)
            xo = tl.load(XO + offsets, mask=mask, other=0.0).to(tl.float32)
            normed = tl.where(mask, (xo - mean[:, None]) * rstd[:, None], 0.0)
            sum_shift += tl.sum(dh, axis=0)
            sum_scale += tl.sum(dh * normed, axis=0)
            dn = dh * (1.0 + scale[None, :])
            mean_dn = tl.sum(dn, axis=1) / D
            mean_dn_n = tl.sum(dn * normed, axis=1) / D
            dx = rstd[:, None] * (dn - mean_dn[:, None] - normed * mean_dn_n[:, None])
            if HAS_ADD:
                dx += tl.load(DXO + offsets, mask=mask, other=0.0).to(tl.float32)
                y = tl.load(Y + offsets, mask=mask, other=0.0).to(tl.float32)
                tl.store(DY + offsets, (gate[None, :] * dx).to(DY.dtype.element_ty), mask=mask)
                sum_gate += tl.sum(tl.where(mask, dx * y, 0.0), axis=0)
                sum_dx += tl.sum(tl.where(mask, dx, 0.0), axis=0)
            tl.store(DX + offsets, dx.to(DX.dtype.element_ty), mask=mask)
        partial = PARTIAL + pid.to(tl.int64) * 4 * D  # (programs, 4, D): shift, scale, gate, dx' sums
        tl.store(partial + cols, sum_shift, mask=col_ok)
        tl.store(partial + D + cols, sum_scale, mask=col_ok)
        if HAS_ADD:
            tl.store(partial + 2 * D + cols, sum_gate, mask=col_ok)
            tl.store(partial + 3 * D + cols, sum_dx, mask=col_ok)

    _tuned_backward = triton.autotune(configs=_CONFIGS, key=["D", "HAS_ADD"])(_norm_modulate_backward_kernel)

    @triton.jit
    def _sample_sums_kernel(PARTIAL, SHIFT, SCALE, GATE, DSUM, D, CHUNKS: tl.constexpr, HAS_ADD: tl.constexpr,
                            BLOCK_D: tl.constexpr):
        """One program per sample: its CHUNKS programs' partial sums, added in program order, stored in the
        outputs' dtypes (the signals' for shift, scale and gate: no cast kernel after this one)."""
        sample = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK_D)
        col_ok = cols < D
        shift = tl.zeros([BLOCK_D], dtype=tl.float32)
        scale = tl.zeros([BLOCK_D], dtype=tl.float32)
        gate = tl.zeros([BLOCK_D], dtype=tl.float32)
        dsum = tl.zeros([BLOCK_D], dtype=tl.float32)
        for chunk in range(CHUNKS):
            partial = PARTIAL + (sample * CHUNKS + chunk) * 4 * D
            shift += tl.load(partial + cols, mask=col_ok, other=0.0)
            scale += tl.load(partial + D + cols, mask=col_ok, other=0.0)
            if HAS_ADD:
                gate += tl.load(partial + 2 * D + cols, mask=col_ok, other=0.0)
                dsum += tl.load(partial + 3 * D + cols, mask=col_ok, other=0.0)
        out = sample * D + cols
        tl.store(SHIFT + out, shift.to(SHIFT.dtype.element_ty), mask=col_ok)
        tl.store(SCALE + out, scale.to(SCALE.dtype.element_ty), mask=col_ok)
        if HAS_ADD:
            tl.store(GATE + out, gate.to(GATE.dtype.element_ty), mask=col_ok)
            tl.store(DSUM + out, dsum, mask=col_ok)

    # one config: nothing to tune, but torch.library.wrap_triton takes an autotuner under Triton's interpreter
    # too, where Triton 3.6 refuses a plain jit function
    _tuned_sums = triton.autotune(configs=[triton.Config({}, num_warps=4)], key=["D"])(_sample_sums_kernel)

    def _sample_sums(partial: Tensor, dtypes: tuple[torch.dtype, ...], kernel=None) -> tuple[Tensor, ...]:
        """(Σ shift, Σ scale[, Σ gate, Σ dx']), each (B, D), from the (B, chunks, 4, D) partial sums: in fp32 from
        inductor's code, in ``dtypes`` (the signals' and fp32 for Σ dx') from ours (``sums_kernel``)."""
        B, chunks, _, D = partial.shape
        has_add = len(dtypes) == 4
        if not sums_kernel:  # inductor's code: separate tensors, as an op's outputs may not alias
            return tuple(partial[:, :, i].sum(1) for i in range(len(dtypes)))
        sums = [torch.empty(B, D, dtype=dtype, device=partial.device) for dtype in dtypes]
        gate, dsum = sums[2:] if has_add else sums[:2]  # unused without the add
        (kernel or _tuned_sums)[(B,)](partial, sums[0], sums[1], gate, dsum, D, CHUNKS=chunks, HAS_ADD=has_add,
                                      BLOCK_D=triton.next_power_of_2(D))
        return tuple(sums)

    def launch_backward(grad_h: Tensor, grad_x_out: Tensor | None, x_out: Tensor, y: Tensor | None,
                        gate: Tensor | None, scale: Tensor, mean: Tensor, rstd: Tensor, kernel=None,
                        sum_kernel=None, **meta) -> tuple[Tensor, ...]:
        """(dx, dy, dshift, dscale, dgate, Σ_T dx') with y (and grad_x_out, gate), else (dx, dshift, dscale);
        the per-sample sums (B, D) in fp32 (with ``sums_kernel``: dshift and dscale in scale's dtype, dgate in
        gate's). ``kernel``/``meta``: as ``fused_norm.launch``; ``sum_kernel``: the kernel that adds up the
        partial sums where ``sums_kernel``."""
        B, T, D = x_out.shape
        has_add = y is not None
        grad_h, x_out = grad_h.contiguous(), x_out.contiguous()
        scale = scale if scale.stride(-1) == 1 else scale.contiguous()
        dx = torch.empty_like(x_out)
        if has_add:
            grad_x_out, y = grad_x_out.contiguous(), y.contiguous()
            gate = gate if gate.stride(-1) == 1 else gate.contiguous()
            dy = torch.empty_like(y)
        chunks = chunks_per_sample(B, T, _MIN_ROWS)
        rows_per_chunk = -(-T // chunks)
        chunks = -(-T // rows_per_chunk)
        partial = torch.empty(B * chunks, 4, D, dtype=torch.float32, device=x_out.device)
        k = kernel or _tuned_backward
        k[(B * chunks,)](grad_h, grad_x_out if has_add else grad_h, x_out, y if has_add else x_out,
                         gate if has_add else scale, scale, mean, rstd, dx, dy if has_add else dx, partial,
                         T, D, chunks, gate.stride(0) if has_add else 0, scale.stride(0),
                         RUN=rows_per_chunk, HAS_ADD=has_add, BLOCK_D=triton.next_power_of_2(D), **meta)
        dtypes = (scale.dtype, scale.dtype) + ((gate.dtype, torch.float32) if has_add else ())
        sums = _sample_sums(partial.view(B, chunks, 4, D), dtypes, sum_kernel)
        return (dx, dy, *sums) if has_add else (dx, *sums)

    def _forward_kernel():
        return torch.library.wrap_triton(fused_norm._tuned_kernel)

    @torch.library.triton_op("hddm::add_norm_modulate_stats", mutates_args=())
    def _add_norm_modulate_stats(x: Tensor, y: Tensor, gate: Tensor, shift: Tensor, scale: Tensor,
                                 eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return fused_norm.launch(x, y, gate, shift, scale, eps, kernel=_forward_kernel(), stats=True)

    @torch.library.triton_op("hddm::norm_modulate_stats", mutates_args=())
    def _norm_modulate_stats(x: Tensor, shift: Tensor, scale: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
        _, h, mean, rstd = fused_norm.launch(x, None, None, shift, scale, eps, kernel=_forward_kernel(), stats=True)
        return h, mean, rstd

    @torch.library.triton_op("hddm::add_norm_modulate_backward", mutates_args=())
    def _add_norm_modulate_backward(grad_h: Tensor, grad_x_out: Tensor, x_out: Tensor, y: Tensor, gate: Tensor,
                                    scale: Tensor, mean: Tensor, rstd: Tensor
                                    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        return launch_backward(grad_h, grad_x_out, x_out, y, gate, scale, mean, rstd,
                               kernel=torch.library.wrap_triton(_tuned_backward),
                               sum_kernel=torch.library.wrap_triton(_tuned_sums))

    @torch.library.triton_op("hddm::norm_modulate_backward", mutates_args=())
    def _norm_modulate_backward(grad_h: Tensor, x: Tensor, scale: Tensor, mean: Tensor,
                                rstd: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return launch_backward(grad_h, None, x, None, None, scale, mean, rstd,
                               kernel=torch.library.wrap_triton(_tuned_backward),
                               sum_kernel=torch.library.wrap_triton(_tuned_sums))
