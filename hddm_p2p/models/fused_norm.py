"""Residual add + LayerNorm + AdaLN modulation in one pass over memory, for sampling on CUDA.

A DiT block spends its element-wise time in two such steps (before attention and before the MLP):

    x' = x + gate·y                  (the gated residual of the branch before; optional)
    h  = LN(x')·(1 + scale) + shift  (LayerNorm without affine weights, then the block's modulation)

with x, y (B, T, D) and gate, shift, scale (B, D). Inductor fuses them into one kernel, but for widths it
will not hold in registers (D = 1152 for DiT-XL/2) it reads x and y twice — once for the statistics, once
for the output. ``add_norm_modulate`` is one Triton kernel that reads x and y once and writes x' and h once,
statistics in fp32. It is registered as a ``torch.library.triton_op``, so ``torch.compile`` (whole model or
per block) calls the kernel as it is.

With ``enabled`` (the switch; on by default) ``DiT`` chains its blocks so that each block's last residual
(after the MLP) is added by the next block's first pass, and the last block's by the final layer's: two
passes per block, each reading x and y once and writing x' and h once. Each program takes a few token rows
and holds each row as two column tiles, the largest power of two ≤ D and the rest (1152 = 1024 + 128), so
no lanes idle on padding. (A variant with one program per (sample, row tile), loading the signals once per
program, measured slower on an H200: 2026-12-01 run 3 in docs/benchmarks.md. So did one padded
power-of-two tile per row, runs 13–14, and a loop over equal power-of-two chunks with x' re-read from L2,
run 19: no faster in the compiled XL/2 forward, slower alone.)

The ops here have no backward: ``usable`` allows them only where no autograd graph is recorded.
Training takes ``fused_norm_train`` (this kernel, also storing each row's mean and 1/std, and a backward
kernel) when that is enabled. Elsewhere — CPU, no Triton — ``reference`` computes the same in plain
PyTorch, and inductor fuses that as before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the plain path only
    triton = None


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x·(1 + scale) + shift, with (B, D) signals broadcast over the T tokens of x (B, T, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def reference(x: Tensor, y: Tensor | None, gate: Tensor | None, shift: Tensor, scale: Tensor,
              eps: float) -> tuple[Tensor, Tensor]:
    """(x', h) in plain PyTorch; x' is x itself when there is no residual to add."""
    if y is not None:
        x = x + gate.unsqueeze(1) * y
    return x, modulate(F.layer_norm(x, x.shape[-1:], eps=eps), shift, scale)


enabled: bool = True  # False: always the plain PyTorch path (benchmarks and tests compare the two)


def records_grad(*tensors: Tensor) -> bool:
    """Whether an op on these tensors records an autograd graph: grad mode on and one of them requires grad."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def usable(x: Tensor, *params: Tensor) -> bool:
    """Whether the kernel may run: ``enabled``, CUDA, Triton importable, and no autograd graph to record."""
    if not enabled or triton is None or not x.is_cuda or x.dim() != 3:
        return False
    return not records_grad(x, *params)


def add_norm_modulate(x: Tensor, y: Tensor | None, gate: Tensor | None, shift: Tensor, scale: Tensor,
                      eps: float) -> tuple[Tensor, Tensor]:
    """(x + gate·y, LN(x + gate·y)·(1 + scale) + shift): the Triton kernel where ``usable``, else
    ``reference``. Without y (and gate) it is the modulated LayerNorm of x, and x' is x."""
    tensors = (x, shift, scale) if y is None else (x, y, gate, shift, scale)
    if not usable(*tensors):
        return reference(x, y, gate, shift, scale, eps)
    if y is None:
        return x, torch.ops.hddm.norm_modulate(x, shift, scale, eps)
    return torch.ops.hddm.add_norm_modulate(x, y, gate, shift, scale, eps)


if triton is not None:
    # a few rows per program; each row is held in registers as two column tiles, the largest power of two
    # ≤ D and the rest (1152 = 1024 + 128, 768 = 512 + 256): no lanes masked off for widths like these
    _CONFIGS = [triton.Config({"ROWS": r}, num_warps=w) for r in (1, 2, 4, 8, 16) for w in (2, 4, 8, 16)
                if r * w <= 64]

    @triton.jit
    def _residual_tile(X, Y, GATE, X_OUT, offsets, gate_offsets, mask, HAS_ADD: tl.constexpr):
        """One tile of x' = x + gate·y in fp32 (stored rounded to X_OUT's dtype, and used as stored)."""
        x = tl.load(X + offsets, mask=mask, other=0.0).to(tl.float32)
        if HAS_ADD:
            y = tl.load(Y + offsets, mask=mask, other=0.0).to(tl.float32)
            gate = tl.load(GATE + gate_offsets, mask=mask, other=0.0).to(tl.float32)
            x_out = (x + gate * y).to(X_OUT.dtype.element_ty)
            tl.store(X_OUT + offsets, x_out, mask=mask)
            x = x_out.to(tl.float32)
        return x

    @triton.jit
    def _modulated_tile(H_OUT, SHIFT, SCALE, offsets, shift_offsets, scale_offsets, normed, mask):
        shift = tl.load(SHIFT + shift_offsets, mask=mask, other=0.0).to(tl.float32)
        scale = tl.load(SCALE + scale_offsets, mask=mask, other=0.0).to(tl.float32)
        tl.store(H_OUT + offsets, (normed * (1.0 + scale) + shift).to(H_OUT.dtype.element_ty), mask=mask)

    @triton.jit
    def _add_norm_modulate_kernel(X, Y, GATE, SHIFT, SCALE, X_OUT, H_OUT, MEAN, RSTD, n_rows, T, D,
                                  stride_gate, stride_shift, stride_scale, eps, HAS_ADD: tl.constexpr,
                                  BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr, ROWS: tl.constexpr,
                                  SAVE_STATS: tl.constexpr = False):
        rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        row_mask = (rows < n_rows)[:, None]
        batch = (rows // T)[:, None]  # the sample each token row belongs to: its modulation signals
        base = rows[:, None].to(tl.int64) * D
        cols_a = tl.arange(0, BLOCK_A)[None, :]
        mask_a = row_mask & (cols_a < BLOCK_A)  # columns always in range: only whole rows are masked
        x_a = _residual_tile(X, Y, GATE, X_OUT, base + cols_a, batch * stride_gate + cols_a, mask_a, HAS_ADD)
        total = tl.sum(x_a, axis=1)
        if BLOCK_B > 0:
            cols_b = BLOCK_A + tl.arange(0, BLOCK_B)[None, :]
            mask_b = row_mask & (cols_b < D)
            x_b = _residual_tile(X, Y, GATE, X_OUT, base + cols_b, batch * stride_gate + cols_b, mask_b, HAS_ADD)
            total += tl.sum(x_b, axis=1)
        mean_rows = total / D
        mean = mean_rows[:, None]
        centred_a = x_a - mean
        squares = tl.sum(centred_a * centred_a, axis=1)
        if BLOCK_B > 0:
            centred_b = tl.where(mask_b, x_b - mean, 0.0)
            squares += tl.sum(centred_b * centred_b, axis=1)
        rstd_rows = 1.0 / tl.sqrt(squares / D + eps)
        rstd = rstd_rows[:, None]
        if SAVE_STATS:  # for the backward (``fused_norm_train``): fp32 mean and 1/std per row
            tl.store(MEAN + rows, mean_rows, mask=rows < n_rows)
            tl.store(RSTD + rows, rstd_rows, mask=rows < n_rows)
        _modulated_tile(H_OUT, SHIFT, SCALE, base + cols_a, batch * stride_shift + cols_a,
                        batch * stride_scale + cols_a, centred_a * rstd, mask_a)
        if BLOCK_B > 0:
            _modulated_tile(H_OUT, SHIFT, SCALE, base + cols_b, batch * stride_shift + cols_b,
                            batch * stride_scale + cols_b, centred_b * rstd, mask_b)

    _tuned_kernel = triton.autotune(configs=_CONFIGS, key=["D", "HAS_ADD", "SAVE_STATS"])(_add_norm_modulate_kernel)

    def launch(x: Tensor, y: Tensor | None, gate: Tensor | None, shift: Tensor, scale: Tensor, eps: float,
               kernel=None, stats: bool = False, **meta) -> tuple[Tensor, ...]:
        """Run the kernel on (B, T, D) x (and y); signals (B, D) with unit stride along D: (x', h), and with
        ``stats`` also each row's fp32 mean and 1/std (B·T,). ``kernel``: the launcher (the custom ops pass
        ``wrap_triton`` of the autotuned kernel; the tests pass the plain kernel with ``ROWS`` in ``meta``,
        for Triton's interpreter on the CPU)."""
        B, T, D = x.shape
        x = x.contiguous()
        signals = [s if s.stride(-1) == 1 else s.contiguous() for s in (shift, scale)]
        has_add = y is not None
        if has_add:
            y = y.contiguous()
            gate = gate if gate.stride(-1) == 1 else gate.contiguous()
        x_out = torch.empty_like(x) if has_add else x
        h = torch.empty_like(x)
        n_rows = B * T
        if stats:
            mean, rstd = (torch.empty(n_rows, dtype=torch.float32, device=x.device) for _ in range(2))
        else:  # never written (SAVE_STATS off); h stands in, so no pointer is null and nothing is allocated
            mean = rstd = h
        block_a = 1 << (D.bit_length() - 1)  # the largest power of two ≤ D, then the rest rounded up
        block_b = triton.next_power_of_2(D - block_a) if D > block_a else 0
        grid = lambda meta: (triton.cdiv(n_rows, meta["ROWS"]),)  # noqa: E731
        k = kernel or _tuned_kernel
        k[grid](x, y if has_add else x, gate if has_add else signals[0], signals[0], signals[1], x_out, h,
                mean, rstd, n_rows, T, D, gate.stride(0) if has_add else 0, signals[0].stride(0),
                signals[1].stride(0), eps, HAS_ADD=has_add, BLOCK_A=block_a, BLOCK_B=block_b,
                SAVE_STATS=stats, **meta)
        return (x_out, h, mean, rstd) if stats else (x_out, h)

    @torch.library.triton_op("hddm::add_norm_modulate", mutates_args=())
    def _add_norm_modulate_op(x: Tensor, y: Tensor, gate: Tensor, shift: Tensor, scale: Tensor,
                              eps: float) -> tuple[Tensor, Tensor]:
        return launch(x, y, gate, shift, scale, eps, kernel=torch.library.wrap_triton(_tuned_kernel))

    @torch.library.triton_op("hddm::norm_modulate", mutates_args=())
    def _norm_modulate_op(x: Tensor, shift: Tensor, scale: Tensor, eps: float) -> Tensor:
        return launch(x, None, None, shift, scale, eps, kernel=torch.library.wrap_triton(_tuned_kernel))[1]
