"""Self-attention of the packed qkv projection through FlashAttention-4's Hopper kernels, for training on CUDA.

FlashAttention-4 (the ``flash-attn-4`` package, ``flash_attn.cute``) writes its kernels in CUTLASS's Python DSL and
compiles them at first use for the shapes it is given. Its Hopper kernels tile a head in multiples of 16 (forward)
and 32 (backward) columns: DiT-XL/2's 72-wide heads run as 80 and 96, where cuDNN's kernels behind SDPA run them as
128 (``flash_attention``'s docstring has the profile). The kernels read q, k and v where the projection put them
((B, T, 3, H, d): strided views, no copies), write o as (B, T, H, d), which the output projection reads as
(B, T, H·d), and the backward writes dq, dk and dv straight into one packed (B, T, 3, H, d) gradient: the copy that
packs SDPA's three gradients for the projection's backward (3.0 ms per DiT-XL/2 step at batch 128) is not made.

By default (``forward_backend = "cudnn"``) the forward is cuDNN's own kernel behind SDPA, asked for its
log-sum-exp (natural log, as FlashAttention-4's backward takes it): on an H200 it ran DiT-XL/2's forward in 5.0 ms
per step against FlashAttention-4's 8.0 ms, while FlashAttention-4's backward took 10.4 ms against cuDNN's 15.1
(run 54, docs/benchmarks.md).

Both halves are custom ops (``hddm::fa4_forward``, ``hddm::fa4_backward``), so ``torch.compile`` traces the model
around them without a graph break. ``enabled`` is the switch; the package is optional (``pip install
"hddm-p2p[hopper]"``, which pins the version tested here), and without it, off Hopper, outside autograd or at
head widths that are no multiple of 8, ``usable`` is False and ``flash_attention.attention`` keeps SDPA. Heads of a
power-of-two width (DiT-B/2's 64) keep ``flash_attention``'s Triton kernels, which come first.

On one H200 (docs/benchmarks.md, runs 54–58), DiT-XL/2 training at batch 128 took 185.5 ms per step against 189.5
through SDPA (49.6 % MFU against 48.5 %, run 56), and at batch 256 361.2 ms against 370.5 (50.9 % against 49.6 %,
run 58). Per step at batch 128: the backward 11.9 ms against cuDNN's 14.9, and no packing copy of the gradients.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util

import torch

Tensor = torch.Tensor

enabled: bool = True  # training self-attention through FlashAttention-4 where ``usable`` (Hopper, the package
                      # installed): DiT-XL/2 trained 2.5 % faster than through SDPA in the same run (run 58)
forward_backend: str = "cudnn"  # "cudnn": SDPA's cuDNN forward with its log-sum-exp, then FlashAttention-4's
                                # backward; "fa4": FlashAttention-4's forward too


TESTED = ("4.0.0b36",)  # the flash-attn-4 versions whose Hopper backward ``_dq_tiles_of_32`` was checked against


_installed: bool | None = None


@torch.compiler.assume_constant_result  # read once while torch.compile traces the model: no graph break
def installed() -> bool:
    """Whether FlashAttention-4's package (``flash_attn.cute``) is importable here, in a version in ``TESTED``."""
    global _installed
    if _installed is None:
        try:
            _installed = (importlib.util.find_spec("flash_attn.cute") is not None
                          and importlib.metadata.version("flash-attn-4") in TESTED)
        except (ModuleNotFoundError, importlib.metadata.PackageNotFoundError):  # no flash_attn package at all
            _installed = False
    return _installed


def usable(qkv: Tensor) -> bool:
    """Whether these kernels take the (B, T, 3, H, d) projection: ``enabled``, the package installed, a Hopper GPU,
    a 16-bit dtype, 8 ≤ d ≤ 256 with d a multiple of 8 (16-byte rows), and an autograd graph to record."""
    from hddm_p2p.models.flash_attention import hopper  # that module calls this one

    d = qkv.shape[-1]
    return (enabled and qkv.dim() == 5 and qkv.shape[2] == 3 and qkv.dtype in (torch.bfloat16, torch.float16)
            and 8 <= d <= 256 and d % 8 == 0 and torch.is_grad_enabled() and qkv.requires_grad
            and installed() and hopper(qkv.device))


def attention(qkv: Tensor, scale: float | None = None) -> Tensor:
    """softmax(q kᵀ·scale) v of the packed projection (B, T, 3, H, d) → (B, T, H, d); scale 1/√d unless given."""
    scale = scale if scale is not None else qkv.shape[-1] ** -0.5
    out, _ = torch.ops.hddm.fa4_forward(qkv, scale, forward_backend == "cudnn")
    return out


@functools.cache
def _interface():
    """FlashAttention-4's interface module, its Hopper backward fixed for head widths that are no multiple of 32."""
    from flash_attn.cute import interface

    interface.FlashAttentionBackwardSm90 = _dq_tiles_of_32(interface.FlashAttentionBackwardSm90)
    return interface


def _round32(n: int) -> int:
    return -(-n // 32) * 32


def _dq_tiles_of_32(kernel: type) -> type:
    """FlashAttention-4's Hopper backward kernel, tiling heads by 32 columns where it would by 16.

    Its kernel (flash-attn-4 4.0.0b36) rounds the head width up to a multiple of 16 (72 → 80) to lay out the fp32
    accumulator of dQ, while the interface allocates that accumulator, and its last pass reads it back, in tiles
    rounded to 32 (96): dQ came back wrong at d = 72 (relative error 0.65 against fp32 SDPA, run 55), dK and dV
    right. Upstream's fix (Dao-AILab/flash-attention pull request 2896, open) makes the kernel round to 32 as well;
    this subclass does the same, and is a no-op at widths that are multiples of 32 or with dK and dV swapped (their
    tiles are multiples of 64)."""
    if getattr(kernel, "hddm_tiles_of_32", False):
        return kernel

    class TilesOf32(kernel):
        hddm_tiles_of_32 = True

        def __init__(self, dtype, head_dim, head_dim_v=None, *args, **kwargs):
            super().__init__(dtype, head_dim, head_dim_v, *args, **kwargs)
            if not self.dKV_swapAB:
                head_dim_v = head_dim if head_dim_v is None else head_dim_v
                self.tile_hdim, self.tile_hdimv = _round32(head_dim), _round32(head_dim_v)
                self.check_hdim_oob = head_dim != self.tile_hdim
                self.check_hdim_v_oob = head_dim_v != self.tile_hdimv

    TilesOf32.__name__ = TilesOf32.__qualname__ = kernel.__name__
    return TilesOf32


@torch.library.custom_op("hddm::fa4_forward", mutates_args=())
def _forward(qkv: Tensor, scale: float, cudnn: bool) -> tuple[Tensor, Tensor]:
    """(o (B, T, H, d), natural log-sum-exp (B, H, T) fp32) of q, k, v read as views of qkv, by cuDNN's kernel
    (``cudnn``) or FlashAttention-4's."""
    if cudnn:
        from hddm_p2p.models.flash_attention import cudnn_forward  # that module calls this one

        out, lse = cudnn_forward(qkv, scale)
        return out.contiguous(), lse.contiguous()  # the layouts the fake below gives compile
    q, k, v = qkv.unbind(2)
    out, lse, *_ = _interface()._flash_attn_fwd(q, k, v, softmax_scale=scale, return_lse=True)
    return out, lse.contiguous()


@_forward.register_fake
def _(qkv: Tensor, scale: float, cudnn: bool) -> tuple[Tensor, Tensor]:
    B, T, _, H, d = qkv.shape
    return qkv.new_empty(B, T, H, d), qkv.new_empty(B, H, T, dtype=torch.float32)


@torch.library.custom_op("hddm::fa4_backward", mutates_args=())
def _backward(qkv: Tensor, out: Tensor, grad: Tensor, lse: Tensor, scale: float) -> Tensor:
    """The gradient of the packed projection (B, T, 3, H, d): dq, dk and dv written into their thirds of it."""
    dqkv = torch.empty(qkv.shape, dtype=qkv.dtype, device=qkv.device)
    q, k, v = qkv.unbind(2)
    dq, dk, dv = dqkv.unbind(2)
    _interface()._flash_attn_bwd(q, k, v, out, grad, lse, softmax_scale=scale, dq=dq, dk=dk, dv=dv)
    return dqkv


@_backward.register_fake
def _(qkv: Tensor, out: Tensor, grad: Tensor, lse: Tensor, scale: float) -> Tensor:
    return qkv.new_empty(qkv.shape)


def _setup(ctx, inputs, output) -> None:
    qkv, scale, _ = inputs
    out, lse = output
    ctx.save_for_backward(qkv, out, lse)
    ctx.scale = scale


def _backward_rule(ctx, grad_out: Tensor, _grad_lse: Tensor | None):
    qkv, out, lse = ctx.saved_tensors
    return torch.ops.hddm.fa4_backward(qkv, out, grad_out.contiguous(), lse, ctx.scale), None, None


_forward.register_autograd(_backward_rule, setup_context=_setup)
