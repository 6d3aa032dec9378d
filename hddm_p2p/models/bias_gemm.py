"""The training forward's GEMMs with a bias epilogue (qkv, proj, fc2) through CUTLASS's kernel on sm_90.

In a DiT-XL/2 training step on an H200 (2026-12-02 run 50, ``benchmarks/train_throughput.py --profile``) cuBLAS's
bias-epilogue GEMMs of the forward ran at 418-532 TFLOP/s: qkv 0.61 ms a call, where the same product alone took
0.36 ms (``benchmarks/gemm_layouts.py``, run 46). The backward's GEMMs of the same shapes ran as fast in the step as
alone, and so did our CUTLASS kernels of the forward (fc1 with its GELU, ``sm90_gemm``).

With ``enabled`` those three forward GEMMs of a training step under half precision take ``sm90_gemm``'s bias
epilogue instead, through ``addmm``, a custom op that torch.compile leaves opaque. Their backward is unchanged:
the callers' autograd functions (``weight_grads._Linear``, ``fused_mlp._FusedMlp``) compute the gradients with the
same GEMMs as before. Elsewhere (no sm_90 GPU, no library, operands its kernels cannot take) the same product is
PyTorch's ``addmm``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hddm_p2p.models import sm90_gemm

Tensor = torch.Tensor

enabled: bool = False  # off until measured in a training step


@torch.compiler.assume_constant_result  # read once while torch.compile traces the model: no graph break
def runs(device: torch.device) -> bool:
    """Whether ``linear`` on ``device`` takes the CUTLASS kernel: ``enabled``, and ``sm90_gemm`` loaded with a bias
    epilogue on an sm_90 GPU."""
    return enabled and device.type == "cuda" and sm90_gemm.available() and sm90_gemm.has("bias")


@torch.library.custom_op("hddm::addmm_sm90", mutates_args=())
def addmm(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """x @ weight.T + bias for x (M, K), weight (N, K), bias (N,): CUTLASS's bias epilogue where its kernels take
    the operands (``sm90_gemm.runnable``), else ``torch.addmm``."""
    if sm90_gemm.runnable("bias", x, weight, bias):
        return sm90_gemm.gemm(x, weight, epilogue="bias", bias=bias)
    return torch.addmm(bias, x, weight.t())


@addmm.register_fake
def _(x, weight, bias):
    return x.new_empty(x.shape[0], weight.shape[0])


def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear(x, weight, bias)`` for operands already in one half dtype (no autograd through here: the caller's
    autograd function has its own backward); x (..., K). Through ``addmm`` where ``runs``."""
    if bias is None or not runs(x.device):
        return F.linear(x, weight, bias)
    out = addmm(x.reshape(-1, x.shape[-1]), weight, bias)
    return out.view(*x.shape[:-1], weight.shape[0])
