"""Self-attention straight from the packed qkv projection, with Triton backward kernels, for training on CUDA.

A DiT block's attention reads q, k and v from one projection laid out (B, T, 3, H, d). Through SDPA, training at
DiT-XL/2's shapes (T = 256 tokens, H = 16 heads of d = 72) costs (2026-12-01 run 27, a 195 ms step):

- cuDNN's backward, 15.4 ms, plus its two passes around it (rowsum(dO ∘ O), and dq from fp32 to bf16), 4.5 ms;
- inductor's copy of SDPA's three gradients dq, dk, dv into the packed gradient of the projection, 3.2 ms.

Here the backward kernels read q, k, v, o and dO where they lie and write dq, dk and dv straight into the packed
(B, T, 3, H, d) gradient, so nothing is copied; each also forms rowsum(dO ∘ O) for the query block it holds, so
there is no pass for it, and sums the dq, dk and dv it writes over their tokens: the gradient of the qkv
projection's bias (``attention``'s ``bias``), which otherwise costs a read of the whole gradient (1.9 ms per
DiT-XL/2 step at batch 128). Each head is held as two column tiles: the largest power of two ≤ d and the rest rounded
up to 16, the narrowest a tensor-core product takes (72 = 64 + 16: 80 columns of work). Probabilities are
recomputed from the forward's log-sum-exp (fp32, base 2, one per query row). Two arrangements of FlashAttention-2's
backward, both without atomics, suit short sequences:

- ``backward = "head"``: one program per head. For each key block it loops over every query block, keeps dK and dV
  in registers and adds dQ's share to an fp32 partial sum in a scratch buffer (five products per pair of blocks);
- ``"blocks"``: one program per (block, head). It computes dK and dV of key block j over every query block, then
  dQ of query block j over every key block (seven products per pair, no scratch).

The forward is cuDNN's own kernel, asked for the log-sum-exp, or the Triton forward, which reads the packed
projection and writes o as (B, T, H·d). By default (``arrangement``) the forward is cuDNN's on Hopper, and the
backward per head for heads of a power-of-two width, per block otherwise.

``enabled`` is the switch: by default on for training on Hopper GPUs with heads of a power-of-two width, where
it was measured faster than SDPA; sampling keeps SDPA. ``attention`` is what the model calls: these kernels where
``usable``, SDPA otherwise. On one H200 (2026-12-01, docs/benchmarks.md) DiT-B/2 training at batch 256 (d = 64)
went from 45.5 % to 46.9 % MFU in the same run (run 38). At DiT-XL/2's d = 72 both arrangements were slower than
SDPA in training (runs 39–40: 203.5 and 206.5 ms per step against 197.8), so that width keeps SDPA, or
FlashAttention-4's backward where that package is installed (``fa4_attention``: faster than SDPA, runs 56–58).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hddm_p2p.models import fa4_attention, fused_norm

Tensor = torch.Tensor
_LOG2E = 1.4426950408889634
triton = fused_norm.triton
if triton is not None:
    import triton.language as tl

enabled: bool | str = "auto"  # "auto": on Hopper GPUs (sm_90) for power-of-two head widths, where it was measured
                              # faster than SDPA (runs 38, 41); True: any CUDA GPU, any width 16-256; False:
                              # self-attention always through SDPA (the benchmarks compare the two)
forward_backend: str = "auto"  # the forward: "cudnn" (SDPA's cuDNN kernel, asked for its log-sum-exp), "triton",
                               # or "auto": cuDNN on Hopper and newer (where it was measured faster), else Triton
backward: str = "auto"  # "head": one program per head, dQ summed in fp32 scratch | "blocks": one per (block, head)
                        # | "auto": "head" for power-of-two head widths, else "blocks" (``arrangement``)
bias_grads: bool = True  # the qkv projection's bias takes its gradient from the backward's token sums


def usable(qkv: Tensor) -> bool:
    """Whether the kernels may run on this (B, T, 3, H, d) projection: ``enabled`` (by default on Hopper), Triton,
    CUDA, a 16-bit dtype, 16 ≤ d ≤ 256, and an autograd graph to record (training). Sampling keeps SDPA, whose
    forward needs no log-sum-exp."""
    return (qkv.dim() == 5 and qkv.shape[2] == 3
            and runs(qkv.device, qkv.dtype, qkv.shape[-1], torch.is_grad_enabled() and qkv.requires_grad))


def runs(device: torch.device, dtype: torch.dtype, d: int, records_grad: bool) -> bool:
    """``usable`` for a projection of this device, dtype and head width, recorded by autograd or not."""
    return (bool(enabled) and triton is not None and device.type == "cuda" and dtype in (torch.bfloat16, torch.float16)
            and 16 <= d <= 256 and records_grad and (enabled is True or (hopper(device) and d & (d - 1) == 0)))


def takes_bias_grad(x: Tensor, layer: torch.nn.Linear, d: int) -> bool:
    """Whether the projection ``layer(x)`` into heads of width d will be ``usable``, with a bias to train: then the
    layer runs with its bias detached and ``attention(qkv, bias=layer.bias)`` gives the bias its gradient."""
    bias = layer.bias
    if not bias_grads or bias is None or not bias.requires_grad or not torch.is_grad_enabled():
        return False
    dtype = torch.get_autocast_dtype("cuda") if x.is_cuda and torch.is_autocast_enabled("cuda") else x.dtype
    return runs(x.device, dtype, d, True)


@torch.compiler.assume_constant_result  # read once while torch.compile traces the model: no graph break
def hopper(device: torch.device) -> bool:
    """Whether ``device`` is a CUDA GPU of compute capability 9.x (H100, H200)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] == 9


@torch.compiler.assume_constant_result  # read once while torch.compile traces the model: no graph break
def cudnn_forward_on(device: torch.device) -> bool:
    """Whether cuDNN's forward (with its log-sum-exp) runs on ``device``: Hopper and newer, cuDNN available."""
    return (device.type == "cuda" and torch.backends.cudnn.is_available()
            and torch.cuda.get_device_capability(device)[0] >= 9)


def arrangement(d: int, device: torch.device) -> tuple[bool, bool]:
    """(cuDNN's forward, the per-head backward) for heads of width d on ``device``, from ``forward_backend`` and
    ``backward``. "auto" picks by what was measured on an H200 (docs/benchmarks.md): cuDNN's forward on Hopper
    (5.1 ms per DiT-XL/2 step against 6.4 ms for the Triton one, runs 39–40); the per-head backward for a
    power-of-two d (DiT-B/2's 64: run 38, 46.9 % MFU), else the per-(block, head) one: at d = 72 the per-head
    kernel spills registers in every config and took 33.1 ms per step against 30.7 ms (runs 39, 40)."""
    power_of_two = d & (d - 1) == 0
    cudnn = cudnn_forward_on(device) if forward_backend == "auto" else forward_backend == "cudnn"
    per_head = power_of_two if backward == "auto" else backward == "head"
    return cudnn and d % 8 == 0 and d <= 128, per_head  # head widths cuDNN's forward takes


def reference(qkv: Tensor, scale: float | None = None) -> Tensor:
    """softmax(q kᵀ·scale) v through SDPA, from and to the kernels' layouts: (B, T, 3, H, d) → (B, T, H, d)."""
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, T, d) views
    return F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2)


def attention(qkv: Tensor, scale: float | None = None, bias: Tensor | None = None) -> Tensor:
    """Self-attention of the packed projection qkv (B, T, 3, H, d) → (B, T, H, d), softmax scale 1/√d unless
    given: the Triton kernels where ``usable``, else FlashAttention-4's where ``fa4_attention.usable``, else
    ``reference`` (SDPA).

    ``bias`` (3·H·d,): the bias already inside qkv, added by a linear layer with it detached; the backward gives
    it its gradient, the token sum of qkv's. Only where ``takes_bias_grad`` said so before the projection."""
    if not usable(qkv):
        if bias is not None:
            raise ValueError("the bias's gradient needs the Triton kernels: ask takes_bias_grad(x, layer, d) first")
        return fa4_attention.attention(qkv, scale) if fa4_attention.usable(qkv) else reference(qkv, scale)
    d = qkv.shape[-1]
    cudnn, per_head = arrangement(d, qkv.device)
    return _FlashAttention.apply(qkv, bias, scale if scale is not None else d ** -0.5, cudnn, per_head)


def kernel_constants(d: int, scale: float) -> dict:
    """The kernels' compile-time constants for head width d: the softmax scale (also times log₂e, for exp2) and the
    two column tiles (``split_width``; DBW: the second tile's width where a tensor needs one even when it is 0)."""
    da, db = split_width(d)
    return {"SCALE": scale, "SCALE2": scale * _LOG2E, "DA": da, "DB": db, "DBW": max(db, 16)}


def split_width(d: int) -> tuple[int, int]:
    """A head's two column tiles: the largest power of two ≤ d, then the rest rounded up to a power of two ≥ 16
    (0 when there is no rest): 72 → (64, 16), 64 → (64, 0), 96 → (64, 32), 40 → (32, 16)."""
    a = 1 << (d.bit_length() - 1)
    return a, (max(16, 1 << (d - a - 1).bit_length()) if d > a else 0)


def cudnn_forward(qkv: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """(o (B, T, H, d) view, natural log-sum-exp (B, H, T) fp32) from cuDNN's SDPA forward on q, k, v as views of
    qkv."""
    B, T, _, H, d = qkv.shape
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    out = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, False, False, scale=scale)
    return out[0].transpose(1, 2), out[1].reshape(B, H, T).float()


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv, bias, scale, cudnn, per_head):  # bias: inside qkv already; only its gradient is ours
        if cudnn:
            o, lse = cudnn_forward(qkv, scale)
            lse = lse * _LOG2E  # the kernels' exponentials are base 2
        else:
            o, lse = torch.ops.hddm.flash_attention(qkv, scale)
        ctx.save_for_backward(qkv, o, lse)
        ctx.scale, ctx.per_head = scale, per_head
        ctx.bias_dtype = None if bias is None else bias.dtype
        return o

    @staticmethod
    def backward(ctx, grad_o):
        qkv, o, lse = ctx.saved_tensors
        dqkv, sums = torch.ops.hddm.flash_attention_backward(grad_o, qkv, o, lse, ctx.scale, ctx.per_head,
                                                             ctx.bias_dtype is not None)
        dbias = None if ctx.bias_dtype is None else sums.sum((0, 1)).flatten().to(ctx.bias_dtype)
        return dqkv, dbias, None, None, None


if triton is not None:
    @triton.jit
    def _tiles(ptr, rows, row_mask, stride_row, d, DA: tl.constexpr, DB: tl.constexpr):
        """Rows of one head as its two column tiles (the second zero past d; the first stands in when DB = 0)."""
        at = ptr + rows[:, None].to(tl.int64) * stride_row
        a = tl.load(at + tl.arange(0, DA)[None, :], mask=row_mask[:, None], other=0.0)
        if DB > 0:
            cols = DA + tl.arange(0, DB)[None, :]
            b = tl.load(at + cols, mask=row_mask[:, None] & (cols < d), other=0.0)
        else:
            b = a
        return a, b

    @triton.jit
    def _store_tiles(ptr, rows, row_mask, stride_row, d, a, b, DA: tl.constexpr, DB: tl.constexpr):
        at = ptr + rows[:, None].to(tl.int64) * stride_row
        tl.store(at + tl.arange(0, DA)[None, :], a.to(ptr.dtype.element_ty), mask=row_mask[:, None])
        if DB > 0:
            cols = DA + tl.arange(0, DB)[None, :]
            tl.store(at + cols, b.to(ptr.dtype.element_ty), mask=row_mask[:, None] & (cols < d))

    @triton.jit
    def _product(a1, b1, a2, b2, DB: tl.constexpr):
        """(rows of 1) · (rows of 2)ᵀ over both column tiles, fp32."""
        s = tl.dot(a1, tl.trans(a2))
        if DB > 0:
            s += tl.dot(b1, tl.trans(b2))
        return s

    @triton.jit
    def _flash_forward_kernel(QKV, O, LSE, T: tl.constexpr, H, d: tl.constexpr, stride_b, stride_t, stride_w, stride_ob,
                              stride_ot, SCALE: tl.constexpr, SCALE2: tl.constexpr, DA: tl.constexpr,
                              DB: tl.constexpr, DBW: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        bh = tl.program_id(1)
        b, h = bh // H, bh % H
        head = QKV + b.to(tl.int64) * stride_b + h * d
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_mask = rows < T
        qa, qb = _tiles(head, rows, row_mask, stride_t, d, DA, DB)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc_a = tl.zeros([BLOCK_M, DA], tl.float32)
        acc_b = tl.zeros([BLOCK_M, DBW], tl.float32)
        for start in range(0, T, BLOCK_N):
            cols = start + tl.arange(0, BLOCK_N)
            col_mask = cols < T
            ka, kb = _tiles(head + stride_w, cols, col_mask, stride_t, d, DA, DB)
            s = _product(qa, qb, ka, kb, DB) * SCALE2
            s = tl.where(col_mask[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            va, vb = _tiles(head + 2 * stride_w, cols, col_mask, stride_t, d, DA, DB)
            p = p.to(va.dtype)
            acc_a = acc_a * alpha[:, None] + tl.dot(p, va)
            if DB > 0:
                acc_b = acc_b * alpha[:, None] + tl.dot(p, vb)
            m_i = m_new
        out = O + b.to(tl.int64) * stride_ob + h * d
        _store_tiles(out, rows, row_mask, stride_ot, d, acc_a / l_i[:, None], acc_b / l_i[:, None], DA, DB)
        tl.store(LSE + bh.to(tl.int64) * T + rows, m_i + tl.log2(l_i), mask=row_mask)

    @triton.jit
    def _delta(O_HEAD, DO_HEAD, rows, row_mask, stride_ot, stride_gt, d, DA: tl.constexpr, DB: tl.constexpr):
        """dO rows (both tiles) and rowsum(dO ∘ O), fp32."""
        oa, ob = _tiles(O_HEAD, rows, row_mask, stride_ot, d, DA, DB)
        ga, gb = _tiles(DO_HEAD, rows, row_mask, stride_gt, d, DA, DB)
        delta = tl.sum(oa.to(tl.float32) * ga.to(tl.float32), 1)
        if DB > 0:
            delta += tl.sum(ob.to(tl.float32) * gb.to(tl.float32), 1)
        return ga, gb, delta

    @triton.jit
    def _key_accumulators(BLOCK: tl.constexpr, DA: tl.constexpr, DBW: tl.constexpr):
        """dK and dV of a key block, both column tiles each, zeroed (fp32)."""
        return (tl.zeros([BLOCK, DA], tl.float32), tl.zeros([BLOCK, DBW], tl.float32),
                tl.zeros([BLOCK, DA], tl.float32), tl.zeros([BLOCK, DBW], tl.float32))

    @triton.jit
    def _store_vectors(ptr, a, b, d, DA: tl.constexpr, DB: tl.constexpr):
        """One head's d values (fp32) at ``ptr``, given as its two column tiles' vectors."""
        tl.store(ptr + tl.arange(0, DA), a)
        if DB > 0:
            cols = DA + tl.arange(0, DB)
            tl.store(ptr + cols, b, mask=cols < d)

    @triton.jit
    def _store_token_sums(ptr, first, a, b, stride_sums, d, T: tl.constexpr, SPAN: tl.constexpr,
                          GRAIN: tl.constexpr, DA: tl.constexpr, DB: tl.constexpr, DBW: tl.constexpr):
        """The column sums of gradient tiles a, b (SPAN token rows from row ``first``) into the token sums
        (⌈T / GRAIN⌉ rows, ``stride_sums`` apart, from ``ptr``): at row first / GRAIN, with zeros in the next
        SPAN / GRAIN − 1 rows that exist. GRAIN is the smallest span any config takes, so each run writes every
        row once whichever config the autotuner picked, and the rows add up to the token sum. GRAIN = 0: no sums
        (no bias asks for them)."""
        if GRAIN > 0:
            row = first // GRAIN
            _store_vectors(ptr + row * stride_sums, tl.sum(a, 0), tl.sum(b, 0), d, DA, DB)
            for extra in tl.static_range(1, SPAN // GRAIN):
                if row + extra < (T + GRAIN - 1) // GRAIN:
                    _store_vectors(ptr + (row + extra) * stride_sums, tl.zeros([DA], tl.float32),
                                   tl.zeros([DBW], tl.float32), d, DA, DB)

    @triton.jit
    def _head_offsets(bh, H, d, T, stride_b, stride_ob, stride_oh, stride_gb):
        """Where head ``bh`` (= b·H + h) starts, in elements: in the packed qkv (and its gradient), in o, in dO, in
        the lse, and in row 0 of the token sums (rows, B, 3, H, d). Offsets, not pointers: torch.compile's
        analysis of which tensors a kernel writes loses track of pointers returned from a function and then takes
        every input for written (and copies each one before the kernel)."""
        b, h = bh // H, bh % H
        return (b.to(tl.int64) * stride_b + h * d, b.to(tl.int64) * stride_ob + h * stride_oh,
                b.to(tl.int64) * stride_gb + h * d, bh.to(tl.int64) * T, b * 3 * H * d + h * d)

    @triton.jit
    def _query_rows(head, o_head, do_head, lse_head, rows, row_mask, stride_t, stride_ot, stride_gt, d,
                    DA: tl.constexpr, DB: tl.constexpr):
        """q and dO (both tiles), rowsum(dO ∘ O) and the log-sum-exp of some query rows."""
        qa, qb = _tiles(head, rows, row_mask, stride_t, d, DA, DB)
        ga, gb, delta = _delta(o_head, do_head, rows, row_mask, stride_ot, stride_gt, d, DA, DB)
        return qa, qb, ga, gb, delta, tl.load(lse_head + rows, mask=row_mask, other=0.0)

    @triton.jit
    def _key_rows(head, rows, row_mask, stride_t, stride_w, d, DA: tl.constexpr, DB: tl.constexpr):
        """k and v (both tiles) of some key rows."""
        ka, kb = _tiles(head + stride_w, rows, row_mask, stride_t, d, DA, DB)
        va, vb = _tiles(head + 2 * stride_w, rows, row_mask, stride_t, d, DA, DB)
        return ka, kb, va, vb

    @triton.jit
    def _flash_backward_kernel(QKV, O, DO, LSE, DQKV, SCRATCH, SUMS, T: tl.constexpr, H, d: tl.constexpr, stride_b,
                               stride_t, stride_w, stride_ob, stride_ot, stride_oh, stride_gb, stride_gt, stride_sums,
                               SCALE: tl.constexpr, SCALE2: tl.constexpr, DA: tl.constexpr, DB: tl.constexpr,
                               DBW: tl.constexpr, BLOCK: tl.constexpr, STEP: tl.constexpr, GRAIN: tl.constexpr):
        """Program (j, head): dK, dV of key block j over every query block, then dQ of query block j over every
        key block (seven products per pair of blocks; ``SCRATCH`` unused). Their token sums go to ``SUMS``
        (``_store_token_sums``)."""
        at_qkv, at_o, at_do, at_lse, at_sums = _head_offsets(tl.program_id(1), H, d, T, stride_b, stride_ob,
                                                              stride_oh, stride_gb)
        head, grad_head, o_head, do_head = QKV + at_qkv, DQKV + at_qkv, O + at_o, DO + at_do
        lse_head, sums = LSE + at_lse, SUMS + at_sums
        first = tl.program_id(0) * BLOCK
        own = first + tl.arange(0, BLOCK)
        own_mask = own < T

        # 1. dK, dV of key block `own`: over every query block, with the probabilities transposed (keys × queries)
        ka, kb, va, vb = _key_rows(head, own, own_mask, stride_t, stride_w, d, DA, DB)
        dk_a, dk_b, dv_a, dv_b = _key_accumulators(BLOCK, DA, DBW)
        for start in range(0, T, STEP):
            rows = start + tl.arange(0, STEP)
            row_mask = rows < T
            qa, qb, ga, gb, delta, lse = _query_rows(head, o_head, do_head, lse_head, rows, row_mask, stride_t,
                                                     stride_ot, stride_gt, d, DA, DB)
            p_t = tl.exp2(_product(ka, kb, qa, qb, DB) * SCALE2 - lse[None, :])
            p_t = tl.where(row_mask[None, :], p_t, 0.0)
            dp_t = _product(va, vb, ga, gb, DB)
            ds_t = (p_t * (dp_t - delta[None, :])).to(qa.dtype)
            p_t = p_t.to(qa.dtype)
            dv_a += tl.dot(p_t, ga)
            dk_a += tl.dot(ds_t, qa)
            if DB > 0:
                dv_b += tl.dot(p_t, gb)
                dk_b += tl.dot(ds_t, qb)
        dk_a, dk_b = tl.where(own_mask[:, None], dk_a * SCALE, 0.0), tl.where(own_mask[:, None], dk_b * SCALE, 0.0)
        dv_a, dv_b = tl.where(own_mask[:, None], dv_a, 0.0), tl.where(own_mask[:, None], dv_b, 0.0)
        _store_tiles(grad_head + stride_w, own, own_mask, stride_t, d, dk_a, dk_b, DA, DB)
        _store_tiles(grad_head + 2 * stride_w, own, own_mask, stride_t, d, dv_a, dv_b, DA, DB)
        _store_token_sums(sums + H * d, first, dk_a, dk_b, stride_sums, d, T, BLOCK, GRAIN, DA, DB, DBW)
        _store_token_sums(sums + 2 * H * d, first, dv_a, dv_b, stride_sums, d, T, BLOCK, GRAIN, DA, DB, DBW)

        # 2. dQ of query block `own`: over every key block
        qa, qb, ga, gb, delta, lse = _query_rows(head, o_head, do_head, lse_head, own, own_mask, stride_t, stride_ot,
                                                 stride_gt, d, DA, DB)
        dq_a = tl.zeros([BLOCK, DA], tl.float32)
        dq_b = tl.zeros([BLOCK, DBW], tl.float32)
        for start in range(0, T, STEP):
            cols = start + tl.arange(0, STEP)
            col_mask = cols < T
            kc, kd, vc, vd = _key_rows(head, cols, col_mask, stride_t, stride_w, d, DA, DB)
            p = tl.exp2(_product(qa, qb, kc, kd, DB) * SCALE2 - lse[:, None])
            p = tl.where(col_mask[None, :], p, 0.0)
            dp = _product(ga, gb, vc, vd, DB)
            ds = (p * (dp - delta[:, None])).to(kc.dtype)
            dq_a += tl.dot(ds, kc)
            if DB > 0:
                dq_b += tl.dot(ds, kd)
        dq_a, dq_b = tl.where(own_mask[:, None], dq_a * SCALE, 0.0), tl.where(own_mask[:, None], dq_b * SCALE, 0.0)
        _store_tiles(grad_head, own, own_mask, stride_t, d, dq_a, dq_b, DA, DB)
        _store_token_sums(sums, first, dq_a, dq_b, stride_sums, d, T, BLOCK, GRAIN, DA, DB, DBW)

    @triton.jit
    def _flash_backward_head_kernel(QKV, O, DO, LSE, DQKV, SCRATCH, SUMS, T: tl.constexpr, H, d: tl.constexpr,
                                    stride_b, stride_t, stride_w, stride_ob, stride_ot, stride_oh, stride_gb,
                                    stride_gt, stride_sums, SCALE: tl.constexpr, SCALE2: tl.constexpr,
                                    DA: tl.constexpr, DB: tl.constexpr, DBW: tl.constexpr, BLOCK: tl.constexpr,
                                    STEP: tl.constexpr, GRAIN: tl.constexpr):
        """Program (head): for each key block (BLOCK rows), over every query block (STEP rows): dK and dV in
        registers, and dQ's share from this key block added to an fp32 partial sum in ``SCRATCH`` (B·H, T, DA + DB),
        written as dQ at the last key block (five products per pair of blocks). Only this program touches its
        head's scratch rows; a barrier orders one key block's writes before the next one's reads. The token sums
        of dQ, dK and dV go to ``SUMS`` (``_store_token_sums``)."""
        at_qkv, at_o, at_do, at_lse, at_sums = _head_offsets(tl.program_id(0), H, d, T, stride_b, stride_ob,
                                                              stride_oh, stride_gb)
        head, grad_head, o_head, do_head = QKV + at_qkv, DQKV + at_qkv, O + at_o, DO + at_do
        lse_head, sums = LSE + at_lse, SUMS + at_sums
        scratch = SCRATCH + tl.program_id(0).to(tl.int64) * T * (DA + DB)
        for kv in range(0, T, BLOCK):
            keys = kv + tl.arange(0, BLOCK)
            key_mask = keys < T
            ka, kb, va, vb = _key_rows(head, keys, key_mask, stride_t, stride_w, d, DA, DB)
            dk_a, dk_b, dv_a, dv_b = _key_accumulators(BLOCK, DA, DBW)
            for start in range(0, T, STEP):
                rows = start + tl.arange(0, STEP)
                row_mask = rows < T
                qa, qb, ga, gb, delta, lse = _query_rows(head, o_head, do_head, lse_head, rows, row_mask, stride_t,
                                                         stride_ot, stride_gt, d, DA, DB)
                p = tl.exp2(_product(qa, qb, ka, kb, DB) * SCALE2 - lse[:, None])  # (STEP, BLOCK)
                p = tl.where(key_mask[None, :], p, 0.0)
                dp = _product(ga, gb, va, vb, DB)
                ds = (p * (dp - delta[:, None])).to(qa.dtype)
                p = p.to(qa.dtype)
                dv_a += tl.dot(tl.trans(p), ga)
                dk_a += tl.dot(tl.trans(ds), qa)
                dq_a = tl.dot(ds, ka)
                at = scratch + rows[:, None].to(tl.int64) * (DA + DB)
                mask = row_mask[:, None]
                if kv > 0:
                    dq_a += tl.load(at + tl.arange(0, DA)[None, :], mask=mask, other=0.0)
                if kv + BLOCK < T:
                    tl.store(at + tl.arange(0, DA)[None, :], dq_a, mask=mask)
                if DB > 0:
                    dv_b += tl.dot(tl.trans(p), gb)
                    dk_b += tl.dot(tl.trans(ds), qb)
                    dq_b = tl.dot(ds, kb)
                    if kv > 0:
                        dq_b += tl.load(at + DA + tl.arange(0, DB)[None, :], mask=mask, other=0.0)
                    if kv + BLOCK < T:
                        tl.store(at + DA + tl.arange(0, DB)[None, :], dq_b, mask=mask)
                else:
                    dq_b = dq_a
                if kv + BLOCK >= T:
                    dq_a = tl.where(mask, dq_a * SCALE, 0.0)
                    dq_b = tl.where(mask, dq_b * SCALE, 0.0)
                    _store_tiles(grad_head, rows, row_mask, stride_t, d, dq_a, dq_b, DA, DB)
                    _store_token_sums(sums, start, dq_a, dq_b, stride_sums, d, T, STEP, GRAIN, DA, DB, DBW)
            dk_a, dk_b = dk_a * SCALE, dk_b * SCALE  # rows past T are zero: p is masked to those keys
            _store_tiles(grad_head + stride_w, keys, key_mask, stride_t, d, dk_a, dk_b, DA, DB)
            _store_tiles(grad_head + 2 * stride_w, keys, key_mask, stride_t, d, dv_a, dv_b, DA, DB)
            _store_token_sums(sums + H * d, kv, dk_a, dk_b, stride_sums, d, T, BLOCK, GRAIN, DA, DB, DBW)
            _store_token_sums(sums + 2 * H * d, kv, dv_a, dv_b, stride_sums, d, T, BLOCK, GRAIN, DA, DB, DBW)
            tl.debug_barrier()  # this key block's partial sums are written before the next block reads them

    _FORWARD_CONFIGS = [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
                        for m in (64, 128) for n in (64, 128) for w in (4, 8) for s in (1, 2)
                        if not (m == 128 and w == 4)]
    _BACKWARD_CONFIGS = [triton.Config({"BLOCK": m, "STEP": n}, num_warps=w, num_stages=s)
                         for m in (64, 128) for n in (32, 64) for w in (4, 8) for s in (1, 2)
                         if not (m == 128 and w == 4)]
    _tuned_forward = triton.autotune(configs=_FORWARD_CONFIGS, key=["T", "H", "d"])(_flash_forward_kernel)
    _tuned_backward = triton.autotune(configs=_BACKWARD_CONFIGS, key=["T", "H", "d"])(_flash_backward_kernel)
    _HEAD_CONFIGS = [triton.Config({"BLOCK": n, "STEP": m}, num_warps=w, num_stages=s)
                     for n in (64, 128) for m in (64, 128) for w in (4, 8) for s in (1, 2)
                     if not (w == 4 and (n == 128 or m == 128))]
    _tuned_head = triton.autotune(configs=_HEAD_CONFIGS, key=["T", "H", "d"])(_flash_backward_head_kernel)

    def _layout(qkv: Tensor) -> tuple[int, int, int, int, int, int]:
        B, T, three, H, d = qkv.shape
        assert qkv.stride(-1) == 1 and qkv.stride(3) == d and qkv.stride(2) == H * d, "qkv must be packed per token"
        return B, T, H, d, qkv.stride(0), qkv.stride(1)

    def launch_forward(qkv: Tensor, scale: float, kernel=None, **meta) -> tuple[Tensor, Tensor]:
        """(o (B, T, H, d), log-sum-exp (B, H, T) in base 2, fp32) of the packed qkv (B, T, 3, H, d). ``kernel``:
        the launcher (the custom op passes ``wrap_triton`` of the autotuned kernel; the tests pass the plain kernel
        with its block sizes in ``meta``, for Triton's interpreter on the CPU)."""
        B, T, H, d, stride_b, stride_t = _layout(qkv)
        o = qkv.new_empty(B, T, H, d)
        lse = torch.empty(B, H, T, dtype=torch.float32, device=qkv.device)
        grid = lambda meta: (triton.cdiv(T, meta["BLOCK_M"]), B * H)  # noqa: E731
        (kernel or _tuned_forward)[grid](qkv, o, lse, T, H, d, stride_b, stride_t, H * d, o.stride(0), o.stride(1),
                                         **kernel_constants(d, scale), **meta)
        return o, lse

    def launch_backward(grad_o: Tensor, qkv: Tensor, o: Tensor, lse: Tensor, scale: float, kernel=None,
                        per_head: bool | None = None, grain: int | None = None, sums: bool = True,
                        **meta) -> tuple[Tensor, Tensor]:
        """(the gradient of the packed qkv (same layout), its token sums (rows, B, 3, H, d) fp32, to be summed over
        the first two dimensions), given dL/do and the forward's o (both (B, T, H, d), any strides with unit
        stride along d) and base-2 log-sum-exp (B, H, T). ``per_head``: one program per head
        (``_flash_backward_head_kernel``) rather than one per (block, head); ``backward`` chooses by default.
        ``grain``: the smallest BLOCK or STEP the kernel may take (default: over its autotuner's configs, else
        ``meta``'s). ``sums=False``: no token sums (an empty tensor in their place)."""
        B, T, H, d, stride_b, stride_t = _layout(qkv)
        constants = kernel_constants(d, scale)
        per_head = arrangement(d, qkv.device)[1] if per_head is None else per_head
        assert o.stride(-1) == 1, "o must have unit stride along the head width"
        if grad_o.stride(-1) != 1 or grad_o.stride(2) != d:
            grad_o = grad_o.contiguous()
        dqkv = torch.empty_like(qkv, memory_format=torch.contiguous_format)
        kernel = kernel or (_tuned_head if per_head else _tuned_backward)
        if per_head:
            scratch = torch.empty(B * H, T, constants["DA"] + constants["DB"], dtype=torch.float32, device=qkv.device)
            grid = (B * H,)
        else:
            scratch = lse  # never read
            grid = lambda meta: (triton.cdiv(T, meta["BLOCK"]), B * H)  # noqa: E731
        if sums:
            configs = getattr(getattr(kernel, "kernel", kernel), "configs", None)  # through wrap_triton's wrapper
            grain = grain or (min(meta["BLOCK"], meta["STEP"]) if "BLOCK" in meta else smallest_span(configs))
        else:
            grain = 0
        token_sums = torch.empty(triton.cdiv(T, grain) if grain else 0, B, 3, H, d, dtype=torch.float32,
                                 device=qkv.device)
        kernel[grid](qkv, o, grad_o, lse, dqkv, scratch, token_sums, T, H, d, stride_b, stride_t, H * d,
                     o.stride(0), o.stride(1), o.stride(2), grad_o.stride(0), grad_o.stride(1), B * 3 * H * d,
                     **constants, GRAIN=grain, **meta)
        return dqkv, token_sums

    def smallest_span(configs) -> int:
        """The smallest BLOCK or STEP among a backward kernel's autotuning configs: the grain of its token sums."""
        if not configs:
            raise ValueError("pass BLOCK and STEP for a kernel that is not autotuned")
        return min(min(c.kwargs["BLOCK"], c.kwargs["STEP"]) for c in configs)

    @torch.library.triton_op("hddm::flash_attention", mutates_args=())
    def _forward_op(qkv: Tensor, scale: float) -> tuple[Tensor, Tensor]:
        return launch_forward(qkv.contiguous(), scale, kernel=torch.library.wrap_triton(_tuned_forward))

    @torch.library.triton_op("hddm::flash_attention_backward", mutates_args=())
    def _backward_op(grad_o: Tensor, qkv: Tensor, o: Tensor, lse: Tensor, scale: float, per_head: bool,
                     sums: bool) -> tuple[Tensor, Tensor]:
        kernel = _tuned_head if per_head else _tuned_backward
        return launch_backward(grad_o, qkv.contiguous(), o, lse, scale, kernel=torch.library.wrap_triton(kernel),
                               per_head=per_head, sums=sums)
