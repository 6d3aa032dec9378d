"""DiT building blocks (Peebles & Xie 2023; PixArt-α's AdaLN-Single, Chen et al. 2023).

Parameter names follow facebookresearch/DiT (``x_embedder.proj``, ``t_embedder.mlp.0``, ``attn.qkv``,
``mlp.fc1``, ``adaLN_modulation.1``, ``final_layer.linear``...) so its checkpoints map onto these modules
one to one. Shapes: B batch, T tokens, D hidden width, L text tokens, E text width.

Modulation: six (B, D) signals per block, in DiT's order (shift, scale, gate) for attention then MLP:
- AdaLN-Zero: each block has its own ``adaLN_modulation = SiLU → Linear(D, 6D)`` applied to c.
- AdaLN-Single: one global ``t_block = SiLU → Linear(D, 6D)`` on c gives t0 (B, 6D); block i adds its
  learned table E_i (6, D): S_i = E_i + t0. The final layer uses its table (2, D) + c.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hddm_p2p.models import flash_attention, fused_mlp, fused_norm_train, qkv_bias
from hddm_p2p.models.fused_mlp import linear, residual_linear
from hddm_p2p.models.fused_norm import modulate  # noqa: F401 (re-exported)
from hddm_p2p.models.fused_norm_train import add_norm_modulate

Tensor = torch.Tensor


def sincos_pos_embed(dim: int, grid: int) -> Tensor:
    """Fixed 2-D sine-cosine positional embedding (MAE/DiT layout), (grid², dim), float32."""
    assert dim % 4 == 0, "hidden size must be divisible by 4 for the 2-D sincos embedding"
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))  # (D/4,)
    coords = torch.arange(grid, dtype=torch.float64)
    gh, gw = torch.meshgrid(coords, coords, indexing="ij")  # DiT: grid = meshgrid(w, h); row = h
    def emb(pos: Tensor) -> Tensor:  # (N,) → (N, D/2)
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)
    return torch.cat([emb(gw), emb(gh)], dim=1).float()  # DiT puts the w-embedding first


class PatchEmbed(nn.Module):
    """(B, C, H, W) image → (B, T, D) tokens with T = (H/p)·(W/p), one Conv2d of stride p."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, D, H/p, W/p) → (B, T, D)


class TimestepEmbedder(nn.Module):
    """Scalar time (B,) → (B, D): sinusoidal features of size ``freq_size`` then a 2-layer MLP."""

    def __init__(self, hidden_size: int, freq_size: int = 256):
        super().__init__()
        self.freq_size = freq_size
        self.mlp = nn.Sequential(nn.Linear(freq_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    @staticmethod
    def sinusoid(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
        """DiT/GLIDE features [cos(t·f_k), sin(t·f_k)], f_k = max_period^(−k/half); t need not be integer."""
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t.float()[:, None] * freqs[None]  # (B, half)
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: Tensor) -> Tensor:
        f = self.sinusoid(t, self.freq_size).to(self.mlp[0].weight.dtype)
        return self.mlp(f)


class LabelEmbedder(nn.Module):
    """Class ids (B,) → (B, D). Row ``num_classes`` is the learned null class used for CFG."""

    def __init__(self, num_classes: int, hidden_size: int):
        super().__init__()
        self.num_classes = num_classes
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)

    def forward(self, labels: Tensor | None, batch: int, drop: Tensor | None = None) -> Tensor:
        device = self.embedding_table.weight.device
        if labels is None:
            labels = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        labels = labels.long().masked_fill(labels < 0, self.num_classes)  # negative id = null too
        if drop is not None:
            labels = labels.masked_fill(drop, self.num_classes)
        return self.embedding_table(labels)


class Mlp(nn.Module):
    """fc1 → GELU(tanh) → fc2, as timm's Mlp in DiT.

    On CUDA the GELU runs inside fc1's cuBLASLt matmul (``fused_mlp``): sampling writes the 4·D-wide
    activation once; training also keeps the pre-activation from that matmul and applies GELU' inside the
    backward's matmul. ``fused_gelu`` / ``fused_gelu_training`` turn either off.
    """

    fused_gelu: bool = True
    fused_gelu_training: bool = True

    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: Tensor, bias_grad: bool = True) -> Tensor:
        """``bias_grad=False``: fc2's bias is added with no gradient through here; the caller computes it
        (``DiTBlock.forward_deferred``: the next norm pass)."""
        kind = fused_mlp.path(self.fc1, self.fc2, x, self.fused_gelu, self.fused_gelu_training)
        if kind == "sampling":
            return fused_mlp.sampling(self.fc1, self.fc2, x)
        if kind == "training":
            return fused_mlp.training(self.fc1, self.fc2, x, bias_grad)
        return linear(self.fc2, self.act(linear(self.fc1, x)), bias_grad)

    def hidden(self, x: Tensor) -> Tensor:
        """GELU(fc1(x)), fc2's input: one matmul with the GELU epilogue when sampling on CUDA."""
        if fused_mlp.path(self.fc1, self.fc2, x, self.fused_gelu, False) == "sampling":
            return fused_mlp.hidden(self.fc1, x)
        return self.act(self.fc1(x))


class CaptionEmbedder(nn.Module):
    """Text-encoder tokens (B, L, E) → (B, L, D) through an MLP; a learned null caption (L, E) for CFG."""

    def __init__(self, text_width: int, hidden_size: int, max_tokens: int):
        super().__init__()
        self.y_proj = Mlp(text_width, hidden_size, hidden_size)
        self.null_tokens = nn.Parameter(torch.randn(max_tokens, text_width) / text_width ** 0.5)

    def forward(self, cond: dict | None, batch: int, drop: Tensor | None = None) -> tuple[Tensor, Tensor]:
        null = self.null_tokens[None].expand(batch, -1, -1)  # (B, L, E)
        if cond is None:
            tokens, mask = null, torch.ones(null.shape[:2], dtype=torch.bool, device=null.device)
        else:
            tokens, mask = cond["tokens"].to(null.dtype), cond["mask"].bool()
            tokens, mask = _fit_tokens(tokens, mask, null.shape[1])
            if drop is not None:
                tokens = torch.where(drop[:, None, None], null, tokens)
                mask = mask | drop[:, None]
        mask = mask | ~mask.any(-1, keepdim=True)  # a row with no valid token attends to all (no NaN)
        return self.y_proj(tokens), mask


def _fit_tokens(tokens: Tensor, mask: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Truncate or zero-pad (B, L', E) tokens and their (B, L') mask to ``length`` tokens."""
    n = tokens.shape[1]
    if n >= length:
        return tokens[:, :length], mask[:, :length]
    pad = length - n
    return F.pad(tokens, (0, 0, 0, pad)), F.pad(mask, (0, pad), value=False)


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention`` (flash/mem-efficient on GPU), or
    through ``flash_attention``'s Triton kernels on the packed projection where that is enabled."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, bias_grad: bool = True) -> Tensor:
        """``bias_grad=False``: proj's bias gets its gradient from the caller (as ``Mlp.forward``)."""
        return linear(self.proj, self.mix(x), bias_grad)

    def forward_routed(self, x: Tensor, proj_bias: Tensor) -> tuple[Tensor, Tensor]:
        """``forward(x, bias_grad=False)``, with the qkv bias's gradient from the algebra of attention
        (``qkv_bias``): returns the output and ``proj_bias`` as the caller's pass that computes its gradient is to
        take it."""
        B, T, D = x.shape
        qkv = linear(self.qkv, x, bias_grad=False).reshape(B, T, 3, self.num_heads, D // self.num_heads)
        qkv, proj_bias = qkv_bias.route(qkv, self.qkv.bias, proj_bias, self.proj.weight)
        return linear(self.proj, flash_attention.attention(qkv).reshape(B, T, D), bias_grad=False), proj_bias

    def mix(self, x: Tensor) -> Tensor:
        """The heads' outputs (B, T, D), before the output projection. Where the Triton kernels take the
        projection they also sum its gradient over the tokens: the qkv bias's gradient, which then does not
        come from the linear layer's backward (one less read of the (B, T, 3·D) gradient)."""
        B, T, D = x.shape
        shape = (B, T, 3, self.num_heads, D // self.num_heads)
        if flash_attention.takes_bias_grad(x, self.qkv, D // self.num_heads):
            qkv = linear(self.qkv, x, bias_grad=False).reshape(shape)
            return flash_attention.attention(qkv, bias=self.qkv.bias).reshape(B, T, D)
        qkv = linear(self.qkv, x).reshape(shape)
        return flash_attention.attention(qkv).reshape(B, T, D)  # SDPA unless the Triton kernels are usable


class CrossAttention(nn.Module):
    """Image tokens (B, T, D) attend to text tokens (B, L, D); ``mask`` (B, L) True = attend."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        B, T, D = x.shape
        h, dh = self.num_heads, D // self.num_heads
        q = self.q(x).reshape(B, T, h, dh).transpose(1, 2)  # (B, H, T, dh)
        kv = self.kv(y).reshape(B, y.shape[1], 2, h, dh).permute(2, 0, 3, 1, 4)  # (2, B, H, L, dh)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask[:, None, None, :])
        return self.proj(out.transpose(1, 2).reshape(B, T, D))


class DiTBlock(nn.Module):
    """Self-attention (+ cross-attention for text) + MLP, each pre-normed and modulated by six signals.

    ``adaln="zero"``: per-block ``adaLN_modulation`` on c (B, D). ``adaln="single"``: c is the global
    t0 (B, 6D) and the block adds its ``scale_shift_table`` (6, D).

    Each "gated residual add + LayerNorm + modulate" goes through ``fused_norm_train.add_norm_modulate``: one
    Triton pass over memory when sampling on CUDA (and, with ``fused_norm_train.enabled``, when training on
    CUDA, with a Triton backward), plain PyTorch otherwise. ``DiT`` then chains the blocks
    through ``forward_deferred``, so each block's MLP residual is added by the next block's first pass, and in
    training the pass after proj and fc2 also sums their bias gradients.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, adaln: str = "single",
                 cross_attn: bool = False):
        super().__init__()
        self.adaln = adaln
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.cross_attn = CrossAttention(dim, num_heads) if cross_attn else None
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if adaln == "zero":
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        else:
            self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim ** 0.5)

    def modulation(self, c: Tensor) -> list[Tensor]:
        """Six (B, D) signals: shift/scale/gate for attention, then for the MLP."""
        if self.adaln == "zero":
            return list(self.adaLN_modulation(c).chunk(6, dim=1))
        s = self.scale_shift_table[None] + c.reshape(c.shape[0], 6, -1)  # (B, 6, D)
        return list(s.unbind(1))

    def signals(self, c: Tensor, dtype: torch.dtype) -> list[Tensor]:
        """``modulation(c)`` in the residual stream's dtype: fp32 under autocast keeps them fp32 (as the fp32
        table + bf16 c promote to), a bf16 stream (``DiT.residual_dtype``) keeps every element-wise pass bf16."""
        return [m.to(dtype) for m in self.modulation(c)]

    def forward(self, x: Tensor, c: Tensor, y: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        if self.cross_attn is None:
            x, (branch, gate, _) = self.forward_deferred(x, c, last_bias_grad=True)
            return x + gate.unsqueeze(1) * branch
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.signals(c, x.dtype)
        _, h = add_norm_modulate(x, None, None, shift_msa, scale_msa, self.norm1.eps)
        x = x + gate_msa.unsqueeze(1) * self.attn(h)
        x = x + self.cross_attn(x, y, mask)
        _, h = add_norm_modulate(x, None, None, shift_mlp, scale_mlp, self.norm2.eps)
        return x + gate_mlp.unsqueeze(1) * self.mlp(h)

    def forward_fused_residual(self, x: Tensor, c: Tensor) -> Tensor:
        """Sampling with each gated residual add inside the epilogue of the GEMM that makes its branch (proj,
        fc2: ``sm90_gemm.linear_gated_residual``), so the norm passes only normalize and modulate: per block two
        fewer (tokens, D) tensors written and read than ``forward_deferred``. Self-attention blocks only."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.signals(c, x.dtype)
        _, h = add_norm_modulate(x, None, None, shift_msa, scale_msa, self.norm1.eps)
        x = residual_linear(self.attn.proj, self.attn.mix(h), gate_msa, x)
        _, h = add_norm_modulate(x, None, None, shift_mlp, scale_mlp, self.norm2.eps)
        return residual_linear(self.mlp.fc2, self.mlp.hidden(h), gate_mlp, x)

    def forward_deferred(self, x: Tensor, c: Tensor, pending: tuple | None = None, last_bias_grad: bool = False
                         ) -> tuple[Tensor, tuple]:
        """The block with its last residual left undone: ``pending`` (branch, gate, bias) of the block before is
        added by this block's first norm pass, and this block's MLP output, gate and fc2 bias are returned as the
        next ``pending``. Self-attention blocks only.

        In training on the fused kernels (``fused_norm_train.takes_bias_grad``) proj and fc2 run with their
        biases detached and the norm pass that adds their branch computes the biases' gradients (``bias`` is
        then the layer's bias, else None). ``last_bias_grad``: fc2's bias keeps its own gradient (the caller adds
        the returned branch itself)."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.signals(c, x.dtype)
        branch, gate, bias = pending if pending is not None else (None, None, None)
        x, h = add_norm_modulate(x, branch, gate, shift_msa, scale_msa, self.norm1.eps, bias)
        proj_bias = _routed_bias(self.attn.proj, x)
        fc2_bias = None if last_bias_grad else _routed_bias(self.mlp.fc2, x)
        if proj_bias is not None and qkv_bias.applies(self.attn.qkv, h, self.attn.num_heads):
            branch, proj_bias = self.attn.forward_routed(h, proj_bias)
        else:
            branch = self.attn(h, bias_grad=proj_bias is None)
        x, h = add_norm_modulate(x, branch, gate_msa, shift_mlp, scale_mlp, self.norm2.eps, proj_bias)
        return x, (self.mlp(h, bias_grad=fc2_bias is None), gate_mlp, fc2_bias)


def _routed_bias(layer: nn.Linear, x: Tensor) -> Tensor | None:
    """The layer's bias where the norm pass over the residual stream x computes its gradient, else None."""
    bias = layer.bias
    return bias if bias is not None and bias.requires_grad and fused_norm_train.takes_bias_grad(x) else None


class FinalLayer(nn.Module):
    """Modulated LayerNorm then Linear(D, p²·C_out): tokens back to patch pixels."""

    def __init__(self, dim: int, patch_size: int, out_channels: int, adaln: str = "single"):
        super().__init__()
        self.adaln = adaln
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        if adaln == "zero":
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        else:
            self.scale_shift_table = nn.Parameter(torch.randn(2, dim) / dim ** 0.5)

    def forward(self, x: Tensor, c: Tensor, pending: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``pending``: the last block's deferred (branch, gate, bias) residual (``DiTBlock.forward_deferred``)."""
        if self.adaln == "zero":
            shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        else:
            shift, scale = (self.scale_shift_table[None] + c[:, None]).unbind(1)  # PixArt: table + c
        branch, gate, bias = pending if pending is not None else (None, None, None)
        _, h = add_norm_modulate(x, branch, gate, shift.to(x.dtype), scale.to(x.dtype), self.norm_final.eps, bias)
        return self.linear(h)
