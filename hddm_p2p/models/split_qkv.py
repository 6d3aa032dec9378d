"""Attention's q, k, v projection for training, as three matmuls whose gradients need no packing.

SDPA's backward (cuDNN, FlashAttention) returns dq, dk and dv as three separate tensors, each laid out
(B, T, H, D/H). From one packed ``qkv`` projection, autograd must first copy them into the (B, T, 3, H, D/H)
gradient of its output: at DiT-XL/2 batch 128 that copy and the bias sums read with it take 5.1 ms of a
198 ms step (2026-12-01 runs 15 and 20 in docs/benchmarks.md).

Here the same ``qkv`` parameter is used in thirds: the forward runs three matmuls, one per projection. The
backward reads dq, dk and dv where they lie. The weight gradient is three matmuls into the thirds of one
(3D, D) tensor. The input gradient is one matmul plus two accumulated into it through the GEMM's β = 1
(``qkv_input_grad``): two more reads and writes of dx inside matmuls that are bound by compute. Three
matmuls with separately summed outputs would move about as many bytes as the copy they replace.

``enabled`` switches it on for ``Attention`` while gradients are recorded (the benchmark row
``+split qkv`` of ``benchmarks/train_throughput.py``); the values are those of the packed projection.
"""

from __future__ import annotations

import torch
from torch import nn

from hddm_p2p.models.fused_norm import records_grad

Tensor = torch.Tensor

enabled: bool = False  # not yet measured on a GPU


@torch.library.custom_op("hddm::qkv_input_grad", mutates_args=())
def qkv_input_grad(dq: Tensor, dk: Tensor, dv: Tensor, weight: Tensor) -> Tensor:
    """dx = dq W_q + dk W_k + dv W_v for (M, D) gradients and the packed (3D, D) weight: one matmul, then two
    accumulated into its output in place (opaque to ``torch.compile``, so it cannot split them apart)."""
    w_q, w_k, w_v = weight.chunk(3)
    dx = torch.mm(dq, w_q)
    dx.addmm_(dk, w_k)
    return dx.addmm_(dv, w_v)


@qkv_input_grad.register_fake
def _(dq: Tensor, dk: Tensor, dv: Tensor, weight: Tensor) -> Tensor:
    return dq.new_empty(dq.shape[0], weight.shape[1])


class _SplitProjection(torch.autograd.Function):
    """(M, D) → three (M, D) projections through the thirds of one (3D, D) weight and (3D,) bias."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ctx.save_for_backward(x, weight)
        return tuple(torch.addmm(b, x, w.t()) for w, b in zip(weight.chunk(3), bias.chunk(3)))

    @staticmethod
    def backward(ctx, dq: Tensor, dk: Tensor, dv: Tensor):
        x, weight = ctx.saved_tensors
        grads = [g.contiguous() for g in (dq, dk, dv)]  # views of SDPA's dense (B, T, H, D/H) gradients
        grad_x = qkv_input_grad(*grads, weight)
        grad_w = torch.cat([g.t() @ x for g in grads])
        grad_b = torch.cat([g.sum(0) for g in grads])
        return grad_x, grad_w, grad_b


def usable(qkv: nn.Linear, x: Tensor) -> bool:
    """Whether ``project`` applies: ``enabled``, a bias, and an autograd graph being recorded."""
    return enabled and qkv.bias is not None and records_grad(x, qkv.weight)


def project(qkv: nn.Linear, x: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v of (B, T, D) tokens, each (B, H, T, D/H), from ``qkv``'s thirds, in the autocast dtype if any."""
    B, T, D = x.shape
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    params = [p.to(dtype) for p in (qkv.weight, qkv.bias)]
    with torch.autocast(device, enabled=False):
        outs = _SplitProjection.apply(x.reshape(B * T, D).to(dtype), *params)
    return tuple(o.view(B, T, heads, D // heads).transpose(1, 2) for o in outs)
