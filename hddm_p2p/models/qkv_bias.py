"""The qkv projection's bias gradient from the algebra of attention, without summing the whole (B, T, 3·D) gradient.

In self-attention without a mask (DiT's), two thirds of that bias's gradient are known in closed form:

- k's bias adds q·b_k to every logit of a query's row. The softmax ignores a constant per row, so b_k's gradient is
  exactly 0.
- v's bias adds b_v to every output row, because each row of the softmax sums to 1. It acts as proj's bias plus
  W_proj·b_v, so its gradient is (proj's bias gradient)·W_proj: a vector times a D × D matrix.

Only q's bias needs a token sum, over the q third of the gradient. In a compiled DiT-XL/2 step inductor sums the
whole packed gradient, in a kernel of 2.0 ms per step on an H200 (``benchmarks/train_throughput.py --profile``,
2026-12-01 run 48). The forward is unchanged: the qkv GEMM still adds the whole bias, detached.

``enabled`` (on): ``DiTBlock.forward_deferred`` takes this path where proj's bias gets its gradient from the norm
pass after the attention (``fused_norm_train.takes_bias_grad``) and the attention is SDPA's (the Triton kernels sum
the bias's gradient themselves: ``flash_attention.takes_bias_grad``), as at DiT-XL/2 on Hopper. Measured on an H200
(2026-12-02, ``benchmarks/train_throughput.py`` row ``+qkv bias algebra``): that sum went from 2.07 to 1.20 ms per
step and the GPU kernel time from 191.6 to 190.2 ms at batch 128 (run 50); the step times were within noise of the
row without it (192.2 against 191.9 ms at batch 128, run 50; 368.2 against 369.5 ms at batch 256, run 52).
"""

from __future__ import annotations

import torch

from hddm_p2p.models import flash_attention

Tensor = torch.Tensor

enabled: bool = True  # DiTBlock.forward_deferred's path where SDPA runs the attention


class _Route(torch.autograd.Function):
    """The identity on the packed projection qkv (B, T, 3, H, d) and on proj's bias; backward: their gradients, and
    for the qkv bias (3·H·d,) [token sum of the q third, 0, proj's bias gradient · W_proj] in one vector. Autograd
    calls it once both gradients are in: proj's (from the norm pass after the attention) comes first."""

    @staticmethod
    def forward(ctx, qkv: Tensor, qkv_bias: Tensor, proj_bias: Tensor, proj_weight: Tensor):
        ctx.save_for_backward(proj_weight)
        ctx.qkv_dtype = qkv_bias.dtype
        return qkv.view_as(qkv), proj_bias.view_as(proj_bias)

    @staticmethod
    def backward(ctx, grad_qkv: Tensor, grad_proj: Tensor):
        (weight,) = ctx.saved_tensors
        dtype = torch.promote_types(grad_qkv.dtype, torch.float32)
        grad_q = grad_qkv[:, :, 0].sum((0, 1), dtype=dtype).reshape(-1)
        grad_v = grad_proj.to(weight.dtype) @ weight if grad_proj is not None else torch.zeros_like(grad_q)
        grad_bias = torch.cat([grad_q, torch.zeros_like(grad_q), grad_v.to(dtype)]).to(ctx.qkv_dtype)
        return grad_qkv, grad_bias, grad_proj, None


def applies(layer: torch.nn.Linear, x: Tensor, num_heads: int) -> bool:
    """Whether the qkv projection ``layer(x)``'s bias takes its gradient from here: ``enabled``, a bias to train,
    and SDPA's attention (the Triton kernels sum the bias's gradient themselves)."""
    bias = layer.bias
    return (enabled and bias is not None and bias.requires_grad and torch.is_grad_enabled()
            and not flash_attention.takes_bias_grad(x, layer, layer.in_features // num_heads))


def route(qkv: Tensor, qkv_bias: Tensor, proj_bias: Tensor, proj_weight: Tensor) -> tuple[Tensor, Tensor]:
    """(qkv, proj_bias) unchanged, for a qkv made by its projection with ``qkv_bias`` detached and a ``proj_bias``
    whose gradient the caller's norm pass computes; ``qkv_bias`` gets its gradient from both of theirs."""
    return _Route.apply(qkv, qkv_bias, proj_bias, proj_weight)
