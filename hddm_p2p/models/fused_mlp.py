"""fc1 → GELU(tanh) → fc2 with the GELU inside cuBLASLt's matmul epilogues, on CUDA.

Sampling (no autograd): fc1 + bias + GELU is one matmul (cuBLASLt's GELU_BIAS epilogue, through
``torch._addmm_activation``, or ``cublaslt.linear_gelu`` with ``cublaslt.sampling``), so the 4·D-wide
activation is written once instead of written, read and written again.

Training: the forward's fc1 writes GELU(pre) and pre from one matmul (GELU_AUX_BIAS); the backward's
fc2 input-gradient matmul multiplies by GELU'(pre) in its epilogue (DGELU). Two element-wise passes over
the (tokens, 4·D) activation per block and step — GELU and its derivative — disappear; both h and pre
are kept for the backward (h for fc2's weight gradient). On an H200, DiT-XL/2 trains 1.03× faster with
it (docs/benchmarks.md, 2026-12-01 run 9).
fc1's bias gradient is a plain sum (cuBLASLt's DGELU_BGRAD, which sums it in the epilogue, ran 2× slower).
Operands are cast to the autocast dtype first, as autocast would cast them for ``nn.Linear``.

``path`` picks: "sampling", "training" or None (the plain ``fc2(act(fc1(x)))``: CPU, no biases, the
switches off, fp32 without autocast).
"""

from __future__ import annotations

import torch
from torch import nn

from hddm_p2p.models import cublaslt, sm90_gemm, weight_grads
from hddm_p2p.models.fused_norm import records_grad

Tensor = torch.Tensor


def path(fc1: nn.Linear, fc2: nn.Linear, x: Tensor, sampling: bool, training: bool) -> str | None:
    """Which MLP computation x takes; ``sampling``/``training`` are the caller's switches for either."""
    if not x.is_cuda or fc1.bias is None or fc2.bias is None:
        return None
    if not records_grad(x, fc1.weight):
        ok = x.dtype == fc1.weight.dtype and not torch.is_autocast_enabled(x.device.type)
        return "sampling" if sampling and ok else None
    half = torch.is_autocast_enabled("cuda") or x.dtype in (torch.bfloat16, torch.float16)
    return "training" if training and half and cublaslt.available() else None


def sampling(fc1: nn.Linear, fc2: nn.Linear, x: Tensor) -> Tensor:
    return linear(fc2, hidden(fc1, x))


def hidden(fc1: nn.Linear, x: Tensor) -> Tensor:
    """GELU(fc1(x)) as one matmul with a GELU epilogue (sampling on CUDA)."""
    x2 = x.reshape(-1, x.shape[-1])
    if cublaslt.sampling or sm90_gemm.enabled:  # the op takes sm90_gemm's kernel where it runs
        h = cublaslt.linear_gelu(x2, fc1.weight, fc1.bias)
    else:  # PyTorch's own call of the same cuBLASLt epilogue, with the heuristic's first algorithm
        h = torch._addmm_activation(fc1.bias, x2, fc1.weight.t(), use_gelu=True)
    return h.view(*x.shape[:-1], h.shape[-1])


def residual_linear(layer: nn.Linear, x: Tensor, gate: Tensor, residual: Tensor) -> Tensor:
    """residual + gate[:, None] ⊙ layer(x) for x (B, T, K), gate (B, N), residual (B, T, N): on an sm_90 GPU one
    GEMM with the residual added in its epilogue (``sm90_gemm.linear_gated_residual``)."""
    B, T, _ = x.shape
    out = sm90_gemm.linear_gated_residual(x.reshape(B * T, -1), layer.weight, layer.bias, gate,
                                          residual.reshape(B * T, -1))
    return out.view(B, T, -1)


def linear(layer: nn.Linear, x: Tensor, bias_grad: bool = True) -> Tensor:
    """``layer(x)``; with ``cublaslt.sampling``, sampling on CUDA takes cuBLASLt's measured algorithm.
    ``bias_grad=False``: the bias is added detached, its gradient left to the caller (a later kernel that sums
    the output's gradient over the tokens anyway)."""
    if weight_grads.usable(x, layer.weight) or weight_grads.transposing(x, layer.weight):
        bias = layer.bias if bias_grad or layer.bias is None else layer.bias.detach()
        return weight_grads.linear(x, layer.weight, bias)
    if not bias_grad and layer.bias is not None:
        return torch.nn.functional.linear(x, layer.weight, layer.bias.detach())
    wanted = cublaslt.sampling or (sm90_gemm.enabled and sm90_gemm.plain)
    if (wanted and layer.bias is not None and x.is_cuda and x.dtype == layer.weight.dtype
            and x.dtype in (torch.bfloat16, torch.float16) and not records_grad(x, layer.weight)):
        out = cublaslt.linear_bias(x.reshape(-1, x.shape[-1]), layer.weight, layer.bias)
        return out.view(*x.shape[:-1], out.shape[-1])
    return layer(x)


class _FusedMlp(torch.autograd.Function):
    """(M, K) → (M, K') through fc1 (GELU_AUX_BIAS epilogue) and fc2; backward with DGELU. fc1's bias gradient is
    a plain sum: summed in a CUTLASS epilogue (a column reduction) the GEMM took 0.19 ms longer per call on an
    H200, more than the sum costs (2026-12-01 run 39).

    The parameters come in as the caller has them. The function casts them to ``dtype``, the input's dtype. With
    fp32 parameters (``weight_grads.enabled``) it returns their gradients in fp32 from the GEMMs themselves. With
    half ones, as before, it returns half gradients."""

    @staticmethod
    def forward(ctx, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        w1h, b1h, w2h, b2h = (p.to(x.dtype) for p in (w1, b1, w2, b2))
        h, pre = cublaslt.linear_gelu_aux(x, w1h, b1h)
        ctx.save_for_backward(x, w1h, w2h, h, pre)
        ctx.fp32 = w1.dtype == torch.float32
        return torch.addmm(b2h, h, w2h.t())

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, w1, w2, h, pre = ctx.saved_tensors
        grad = grad.contiguous()
        grad_pre = cublaslt.matmul_dgelu(grad, w2, pre)
        if ctx.fp32:
            w_grad, b_grad = (lambda g, a, _w: weight_grads.weight_grad(g, a)), weight_grads.bias_grad
        else:  # half gradients; fc2's as the transposed product where ``weight_grads.transposed``
            w_grad, b_grad = weight_grads.weight_grad_half, (lambda g: g.sum(0))
        grad_b2 = b_grad(grad) if ctx.needs_input_grad[4] else None  # None: the caller sums it (``training``)
        return grad_pre @ w1, w_grad(grad_pre, x, w1), b_grad(grad_pre), w_grad(grad, h, w2), grad_b2


def training(fc1: nn.Linear, fc2: nn.Linear, x: Tensor, bias_grad: bool = True) -> Tensor:
    """The MLP through ``_FusedMlp``; ``bias_grad=False``: fc2's bias detached (as ``linear``). The parameters go in
    as fp32 where ``weight_grads.usable`` (their gradients then come out of the GEMMs in fp32), else cast first."""
    dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else x.dtype
    b2 = fc2.bias if bias_grad else fc2.bias.detach()
    params = (fc1.weight, fc1.bias, fc2.weight, b2)
    if not weight_grads.usable(x, fc1.weight):
        params = tuple(p.to(dtype) for p in params)
    with torch.autocast("cuda", enabled=False):
        out = _FusedMlp.apply(x.reshape(-1, x.shape[-1]).to(dtype).contiguous(), *params)
    return out.view(*x.shape[:-1], out.shape[-1])
