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

``transposed`` (on) picks, for the half gradients, the orientation of the weight-gradient GEMM that cuBLAS runs
faster: (xᵀ·g)ᵀ for layers with fewer outputs than inputs (DiT's fc2), gᵀ·x for the others.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

enabled: bool = False  # training under half autocast: weight gradients from the GEMM in fp32 (no gain, run 43)
# Half weight gradients dW = gᵀ·x computed as the transposed product (xᵀ·g)ᵀ and copied to W's layout, for layers
# with fewer outputs than inputs (DiT's fc2). In a compiled step the copy is the cast to the fp32 parameter's dtype
# that runs anyway. On an H200 at DiT-XL/2 (2026-12-01): fc2's product took 0.459 ms that way against 0.563 ms
# alone (``benchmarks/gemm_layouts.py``, run 46) and about 0.49 against 0.59 ms in a training step (run 47). There
# qkv's transposed product was slower (658 against 676 TFLOP/s) and made inductor's packing of its gradient 1.2 ms
# slower per step; proj's (square) is the same GEMM either way.
transposed: bool = True


def half_dtype(x: Tensor) -> torch.dtype | None:
    """The half dtype autocast computes x's matmuls in, or x's own dtype if half, else None."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype if x.dtype in (torch.bfloat16, torch.float16) else None


def _trains_in_half(x: Tensor, weight: Tensor) -> bool:
    """An fp32 weight that takes a gradient, with the layer computed in half precision (autocast or half inputs)."""
    return (torch.is_grad_enabled() and weight.requires_grad and weight.dtype == torch.float32
            and half_dtype(x) is not None)


def usable(x: Tensor, weight: Tensor) -> bool:
    """Whether ``linear`` takes the fp32-gradient path: ``enabled``, an fp32 weight that takes a gradient and
    half-precision compute."""
    return enabled and _trains_in_half(x, weight)


def transposes(weight: Tensor) -> bool:
    """Whether a half weight gradient of this (out, in) weight is computed transposed (``transposed``)."""
    return transposed and weight.shape[0] < weight.shape[1]


def transposing(x: Tensor, weight: Tensor) -> bool:
    """Whether ``linear`` takes the transposed weight-gradient path (and not the fp32 one): ``transposes`` the
    weight, an fp32 weight that takes a gradient, half-precision compute."""
    return not enabled and transposes(weight) and _trains_in_half(x, weight)


def weight_grad_half(grad: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """dW = gradᵀ·x in the operands' dtype, laid out as ``weight``; as (xᵀ·grad)ᵀ where ``transposes(weight)``."""
    g2, x2 = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
    if transposes(weight):
        return (x2.t() @ g2).t().contiguous()
    return g2.t() @ x2


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
    fp32: dW from the GEMM in fp32 (``fp32_grads``), else the half GEMM's (``weight_grad_half``) cast."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, dtype: torch.dtype, fp32_grads: bool) -> Tensor:
        x, w = x.to(dtype), weight.to(dtype)
        ctx.save_for_backward(x, w)
        ctx.fp32_grads = fp32_grads
        return F.linear(x, w, None if bias is None else bias.to(dtype))

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, w = ctx.saved_tensors
        dx = grad @ w if ctx.needs_input_grad[0] else None
        db = bias_grad(grad) if ctx.needs_input_grad[2] else None
        dw = weight_grad(grad, x) if ctx.fp32_grads else weight_grad_half(grad, x, w).float()
        return dx, dw, db, None, None


def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear(x, weight, bias)`` as autocast computes it, with the weight's (and bias's) gradient from the GEMM in
    fp32 where ``usable``, else (``transposing``) from the transposed half product. A detached bias is added
    without a gradient."""
    dtype, fp32_grads = half_dtype(x), usable(x, weight)  # both read autocast's state, off below
    with torch.autocast(x.device.type, enabled=False):
        return _Linear.apply(x, weight, bias, dtype, fp32_grads)
