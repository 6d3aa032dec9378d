"""Self-attention read straight from the fused qkv projection, for sampling on CUDA.

A DiT's tokens are few (256 for 32×32 latents and patch 2) and its head widths are not always powers of
two (DiT-XL/2: 16 heads of 72). The flash kernels behind ``F.scaled_dot_product_attention`` round a head
up to the next width they have (72 → 128): 78 % more matmul work in QKᵀ and PV. ``self_attention`` is one
Triton kernel that splits a head into two column tiles instead, the largest power of two ≤ d and the rest
rounded up to 16 (72 = 64 + 16, 11 % padding; 64 = 64 alone), and takes q, k and v straight from the
(B, T, 3·D) output of the qkv linear and writes (B, T, D), the proj linear's input: no permuted copies
on either side.

Each program takes ``BLOCK_M`` query rows of one (sample, head) and walks the keys in blocks of ``BLOCK_N``
with the online softmax (exp2, fp32 statistics, bf16 operands into the tensor cores). It is a sampling path:
no backward; ``usable`` says when it may run (``enabled``, CUDA, Triton, no autograd graph to record), and
``Attention`` falls back to ``F.scaled_dot_product_attention`` otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the plain path only
    triton = None

enabled: bool = True  # False: always F.scaled_dot_product_attention (benchmarks and tests compare the two)


def reference(qkv: Tensor, heads: int) -> Tensor:
    """(B, T, 3·D) → (B, T, D) through ``F.scaled_dot_product_attention``."""
    B, T, three_d = qkv.shape
    D = three_d // 3
    q, k, v = qkv.reshape(B, T, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, D)


def usable(qkv: Tensor, heads: int, *params: Tensor) -> bool:
    """Whether the kernel may run: ``enabled``, CUDA, Triton importable, bf16/fp16, a head of ≥ 16 columns,
    and no autograd graph to record."""
    if not enabled or triton is None or not qkv.is_cuda or qkv.dim() != 3:
        return False
    if qkv.dtype not in (torch.bfloat16, torch.float16) or qkv.shape[-1] // 3 // heads < 16:
        return False
    return not (torch.is_grad_enabled() and (qkv.requires_grad or any(p.requires_grad for p in params)))


def self_attention(qkv: Tensor, heads: int) -> Tensor:
    """Softmax(q kᵀ/√d) v for every head of the (B, T, 3·D) qkv projection, as (B, T, D): the Triton kernel
    where ``usable``, else ``reference``."""
    if not usable(qkv, heads):
        return reference(qkv, heads)
    return torch.ops.hddm.self_attention(qkv, heads)


def head_tiles(d: int) -> tuple[int, int]:
    """The two column tiles a head of width d is held in: (largest power of two ≤ d, the rest rounded up to a
    power of two ≥ 16, or 0)."""
    a = 1 << (d.bit_length() - 1)
    return a, (max(16, triton.next_power_of_2(d - a)) if d > a else 0)


if triton is not None:
    _CONFIGS = [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
                for m, n, w, s in [(64, 64, 4, 2), (64, 128, 4, 2), (128, 64, 4, 2), (128, 64, 8, 2),
                                   (128, 128, 8, 2), (128, 128, 8, 3), (64, 256, 4, 1), (128, 256, 8, 1)]]

    @triton.jit
    def _load_head(PTR, rows, row_ok, T, stride_row, col0, HEAD_DIM: tl.constexpr, START: tl.constexpr,
                   WIDTH: tl.constexpr):
        """Columns [START, START + WIDTH) of one head for the given token rows; past the head's width: 0."""
        cols = START + tl.arange(0, WIDTH)
        mask = row_ok[:, None] & (cols < HEAD_DIM)[None, :]
        return tl.load(PTR + rows[:, None].to(tl.int64) * stride_row + col0 + cols[None, :], mask=mask, other=0.0)

    @triton.jit
    def _self_attention_kernel(QKV, OUT, H, D, T: tl.constexpr, QK_SCALE: tl.constexpr, HEAD_DIM: tl.constexpr,
                               HEAD_A: tl.constexpr, HEAD_B: tl.constexpr, BLOCK_M: tl.constexpr,
                               BLOCK_N: tl.constexpr):
        """One program: BLOCK_M query rows of one (sample, head). T (tokens) and the scale are compile-time
        constants: one specialisation per model shape, the key loop unrolled."""
        pid_m, bh = tl.program_id(0), tl.program_id(1)
        b, h = bh // H, bh % H
        stride_in = 3 * D
        x = QKV + b.to(tl.int64) * T * stride_in  # this sample's (T, 3·D) rows
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < T
        q_a = _load_head(x, rows, row_ok, T, stride_in, h * HEAD_DIM, HEAD_DIM, 0, HEAD_A)
        if HEAD_B > 0:
            q_b = _load_head(x, rows, row_ok, T, stride_in, h * HEAD_DIM, HEAD_DIM, HEAD_A, HEAD_B)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc_a = tl.zeros([BLOCK_M, HEAD_A], tl.float32)
        acc_b = tl.zeros([BLOCK_M, HEAD_B if HEAD_B > 0 else 16], tl.float32)
        for start in range(0, T, BLOCK_N):
            keys = start + tl.arange(0, BLOCK_N)
            key_ok = keys < T
            k_a = _load_head(x, keys, key_ok, T, stride_in, D + h * HEAD_DIM, HEAD_DIM, 0, HEAD_A)
            s = tl.dot(q_a, tl.trans(k_a))
            if HEAD_B > 0:
                k_b = _load_head(x, keys, key_ok, T, stride_in, D + h * HEAD_DIM, HEAD_DIM, HEAD_A, HEAD_B)
                s = tl.dot(q_b, tl.trans(k_b), s)
            s = tl.where(key_ok[None, :], s * QK_SCALE, float("-inf"))  # log2 units: exp2 below
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            alpha = tl.math.exp2(m_i - m_new)
            p = tl.math.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            p = p.to(q_a.dtype)
            v_a = _load_head(x, keys, key_ok, T, stride_in, 2 * D + h * HEAD_DIM, HEAD_DIM, 0, HEAD_A)
            acc_a = tl.dot(p, v_a, acc_a * alpha[:, None])
            if HEAD_B > 0:
                v_b = _load_head(x, keys, key_ok, T, stride_in, 2 * D + h * HEAD_DIM, HEAD_DIM, HEAD_A, HEAD_B)
                acc_b = tl.dot(p, v_b, acc_b * alpha[:, None])
            m_i = m_new
        out = OUT + b.to(tl.int64) * T * D + rows[:, None].to(tl.int64) * D + h * HEAD_DIM
        cols_a = tl.arange(0, HEAD_A)[None, :]
        tl.store(out + cols_a, (acc_a / l_i[:, None]).to(OUT.dtype.element_ty), mask=row_ok[:, None])
        if HEAD_B > 0:
            cols_b = HEAD_A + tl.arange(0, HEAD_B)[None, :]
            tl.store(out + cols_b, (acc_b / l_i[:, None]).to(OUT.dtype.element_ty),
                     mask=row_ok[:, None] & (cols_b < HEAD_DIM))

    _tuned_kernel = triton.autotune(configs=_CONFIGS, key=["T", "HEAD_DIM"])(_self_attention_kernel)

    def launch(qkv: Tensor, heads: int, kernel=None, **meta) -> Tensor:
        """Run the kernel on a (B, T, 3·D) qkv tensor. ``kernel``: the launcher (the custom op passes
        ``wrap_triton`` of the autotuned kernel; the tests pass the plain kernel with ``BLOCK_M``/``BLOCK_N`` in
        ``meta``, for Triton's interpreter on the CPU)."""
        B, T, three_d = qkv.shape
        D = three_d // 3
        d = D // heads
        qkv = qkv.contiguous()
        out = qkv.new_empty(B, T, D)
        head_a, head_b = head_tiles(d)
        grid = lambda meta: (triton.cdiv(T, meta["BLOCK_M"]), B * heads)  # noqa: E731
        (kernel or _tuned_kernel)[grid](qkv, out, heads, D, T=T, QK_SCALE=math.log2(math.e) / math.sqrt(d),
                                        HEAD_DIM=d, HEAD_A=head_a, HEAD_B=head_b, **meta)
        return out

    @torch.library.triton_op("hddm::self_attention", mutates_args=())
    def _self_attention_op(qkv: Tensor, heads: int) -> Tensor:
        return launch(qkv, heads, kernel=torch.library.wrap_triton(_tuned_kernel))
