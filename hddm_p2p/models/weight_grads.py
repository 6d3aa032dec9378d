"""Linear layers trained under half-precision autocast, with their weight gradients written by the GEMM in fp32.

Under bf16 autocast a linear layer computes with a bf16 copy of its fp32 weight. Its weight gradient
dW = dYᵀ·X then leaves the GEMM in bf16, and a separate kernel casts it to fp32 for the parameter. On a
DiT-XL/2 step (batch 128) those casts are kernels of 1.4 ms on an H200. They are the ``_to_copy`` and
``_to_copy_t`` kernels of weight size in run 40's profile and in ``benchmarks/inductor_kernels.py``.

With ``enabled``, ``linear`` runs the layer as one autograd function whose backward asks the GEMM for an fp32
output instead (cuBLAS's ``torch.mm(..., out_dtype=torch.float32)``). There is no cast kernel, and no rounding of
the gradient to bf16 before it is accumulated. The bias gradient is summed in fp32 too. The MLP's fused training
function (``fused_mlp``) does the same for fc1 and fc2. ``enabled`` is off: on one H200 (2026-12-01 run 43,
``benchmarks/train_throughput.py``, row ``+fp32 weight grads``) the casts were gone but the GEMMs with fp32 output
took about as long, and a DiT-XL/2 step took 190.9 ms against 190.2 ms without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

enabled: bool = False  # training under half autocast: weight gradients from the GEMM in fp32 (no gain, run 43)


def half_dtype(x: Tensor) -> torch.dtype | None:
    """The half dtype autocast computes x's matmuls in, or x's own dtype if half, else None."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype if x.dtype in (torch.bfloat16, torch.float16) else None


def usable(x: Tensor, weight: Tensor) -> bool:
    """Whether ``linear`` takes the fp32-gradient path: ``enabled``, an fp32 weight that takes a gradient and
    half-precision compute."""
    return (enabled and torch.is_grad_enabled() and weight.requires_grad and weight.dtype == torch.float32
            and half_dtype(x) is not None)


def matmul_fp32(a: Tensor, b: Tensor) -> Tensor:
    """a @ b of half matrices as fp32: the GEMM's own fp32 output on CUDA; elsewhere (no such kernel) from fp32
    copies of the operands, which hold the same values."""
    if a.is_cuda:
        return torch.mm(a, b, out_dtype=torch.float32)
    return a.float() @ b.float()


def weight_grad(grad: Tensor, x: Tensor) -> Tensor:
    """dW = gradᵀ·x in fp32, for (..., out) and (..., in) activations."""
    return matmul_fp32(grad.reshape(-1, grad.shape[-1]).t(), x.reshape(-1, x.shape[-1]))


def bias_grad(grad: Tensor) -> Tensor:
    """The bias's gradient: the output gradient summed over every token, in fp32."""
    return grad.reshape(-1, grad.shape[-1]).sum(0, dtype=torch.float32)


class _Linear(torch.autograd.Function):
    """y = x·Wᵀ + b computed in ``dtype`` from the fp32 weight and bias; backward: dx in ``dtype``, dW and db in
    fp32."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, dtype: torch.dtype) -> Tensor:
        x, w = x.to(dtype), weight.to(dtype)
        ctx.save_for_backward(x, w)
        return F.linear(x, w, None if bias is None else bias.to(dtype))

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, w = ctx.saved_tensors
        dx = grad @ w if ctx.needs_input_grad[0] else None
        db = bias_grad(grad) if ctx.needs_input_grad[2] else None
        return dx, weight_grad(grad, x), db, None


def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear(x, weight, bias)`` as autocast computes it, with the weight's (and bias's) gradient from the GEMM in
    fp32 (``usable`` first). A detached bias is added without a gradient."""
    dtype = half_dtype(x)
    with torch.autocast(x.device.type, enabled=False):
        return _Linear.apply(x, weight, bias, dtype)
