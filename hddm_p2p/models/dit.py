"""DiT (Peebles & Xie 2023) with PixArt-α's AdaLN-Single (default) or the original AdaLN-Zero.

The model honours the expert callable contract of ``docs/contracts.md``::

    model(x_s, t_scaled, cond) -> Tensor shaped like x_s
    cond: None (null / unconditional for every sample) | LongTensor (B,) class ids
          | {"tokens": (B, L, E) float, "mask": (B, L) bool} text-encoder outputs

Time: ``t_scaled`` feeds the sinusoidal embedding directly. Experts trained from scratch use
``time_scale = 1000`` (continuous t ∈ [0, 1000]); a converted ImageNet DiT has ``time_scale = 999`` and
``discrete_time = True``, so the model rounds t to DiT's integer grid (t_DiT = round(999·s)) and the
pretrained timestep embedder sees exactly the inputs it was trained on.

Parameter counts at DiT-XL/2 on 32×32×4 latents: AdaLN-Zero with 1000 classes and learned σ
(facebookresearch/DiT) ≈ 675M; AdaLN-Single with text cross-attention (PixArt-α, T5 width 4096) ≈ 611M,
of which removing the 28 per-block Linear(D, 6D) saves 28·(6D² + 6D) − (6D² + 6D) ≈ 215M.

    >>> cfg = get_preset("DiT-B/2", input_size=32, in_channels=4)
    >>> model = DiT(cfg)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from hddm_p2p.errors import SpecError
from hddm_p2p.models import fused_norm, fused_norm_train, sm90_gemm
from hddm_p2p.models.fused_norm import records_grad
from hddm_p2p.models.layers import (
    CaptionEmbedder,
    DiTBlock,
    FinalLayer,
    LabelEmbedder,
    PatchEmbed,
    TimestepEmbedder,
    sincos_pos_embed,
)

Tensor = torch.Tensor
ADALN = ("single", "zero")
CONDITIONS = ("none", "class", "text")


@dataclass(frozen=True)
class DiTConfig:
    """Everything needed to rebuild a DiT; stored as JSON in the expert's safetensors metadata."""

    input_size: int = 32            # spatial size of x (pixels, or latents = image / 8)
    in_channels: int = 4            # 3 for pixels, 4 for SD-VAE latents
    patch_size: int = 2
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    adaln: str = "single"           # "single" (PixArt-α) | "zero" (DiT)
    condition: str = "none"         # "none" | "class" | "text"
    num_classes: int = 0            # class conditioning only
    text_width: int = 0             # text-encoder width E (text only)
    max_tokens: int = 0             # text tokens L kept (text only)
    learn_sigma: bool = False       # DiT's extra C output channels (kept only for parity counts)
    discrete_time: bool = False     # round t_scaled to integers (converted ImageNet DiTs)
    freq_size: int = 256            # sinusoidal timestep features
    preset: str | None = None       # registry name it came from, informational

    def __post_init__(self):
        if self.adaln not in ADALN:
            raise SpecError(f"unknown adaln {self.adaln!r}; choose one of: {', '.join(ADALN)}")
        if self.condition not in CONDITIONS:
            raise SpecError(f"unknown condition {self.condition!r}; choose one of: {', '.join(CONDITIONS)}")
        if self.condition == "class" and self.num_classes < 1:
            raise SpecError("class conditioning needs num_classes >= 1")
        if self.condition == "text" and (self.text_width < 1 or self.max_tokens < 1):
            raise SpecError("text conditioning needs text_width >= 1 and max_tokens >= 1")
        if self.hidden_size % self.num_heads or self.hidden_size % 4:
            raise SpecError(f"hidden_size {self.hidden_size} must be divisible by num_heads and by 4")
        if self.input_size % self.patch_size:
            raise SpecError(f"input_size {self.input_size} is not a multiple of patch_size {self.patch_size}")

    @property
    def out_channels(self) -> int:
        return self.in_channels * (2 if self.learn_sigma else 1)

    @property
    def num_tokens(self) -> int:
        return (self.input_size // self.patch_size) ** 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "DiTConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise SpecError(f"unknown DiT config fields: {', '.join(sorted(unknown))}")
        return cls(**d)

    def replace(self, **changes) -> "DiTConfig":
        return dataclasses.replace(self, **changes)


# Preset registry: (hidden, depth, heads, patch); sizes from the DiT paper, `tiny` for CPU tests.
_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "DiT-S/2": (384, 12, 6, 2),
    "DiT-B/2": (768, 12, 12, 2),
    "DiT-L/2": (1024, 24, 16, 2),
    "DiT-XL/2": (1152, 28, 16, 2),
    "DiT-S/4": (384, 12, 6, 4),
    "DiT-B/4": (768, 12, 12, 4),
    "tiny": (64, 2, 4, 4),
    "mini": (96, 3, 4, 2),  # small images (8×8 digits) on a CPU: 16 tokens at 8×8
}
PRESETS: dict[str, Callable[..., DiTConfig]] = {
    name: (lambda n=name, s=shape, **kw: DiTConfig(**{
        "hidden_size": s[0], "depth": s[1], "num_heads": s[2], "patch_size": s[3], "preset": n, **kw}))
    for name, shape in _SHAPES.items()
}


def get_preset(name: str, **overrides) -> DiTConfig:
    """The config of preset ``name`` with ``overrides`` (input_size, in_channels, condition...)."""
    if name not in PRESETS:
        raise SpecError(f"unknown architecture {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name](**overrides)


class DiT(nn.Module):
    """Diffusion transformer; ``forward(x, t_scaled, cond, drop=None)``.

    ``drop`` (B,) bool replaces the marked samples' condition by the learned null (label/caption
    dropout for classifier-free guidance); the training objective samples it from its own generator.

    ``residual_dtype`` (a runtime setting, not part of the config): None keeps the residual stream in the
    input's dtype — fp32 under bf16 autocast, as DiT trains; ``torch.bfloat16`` carries it in bf16, which
    halves the bytes of every element-wise pass between the matmuls (norm, modulate, gate, residual add).
    """

    residual_dtype: torch.dtype | None = None

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = c = config
        D = c.hidden_size
        self.x_embedder = PatchEmbed(c.patch_size, c.in_channels, D)
        self.t_embedder = TimestepEmbedder(D, c.freq_size)
        self.y_embedder = LabelEmbedder(c.num_classes, D) if c.condition == "class" else None
        self.caption_embedder = (CaptionEmbedder(c.text_width, D, c.max_tokens) if c.condition == "text" else None)
        self.register_buffer("pos_embed", sincos_pos_embed(D, c.input_size // c.patch_size)[None])  # (1, T, D)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D)) if c.adaln == "single" else None
        self.blocks = nn.ModuleList(
            DiTBlock(D, c.num_heads, c.mlp_ratio, c.adaln, cross_attn=c.condition == "text") for _ in range(c.depth))
        self.final_layer = FinalLayer(D, c.patch_size, c.out_channels, c.adaln)
        if not self.pos_embed.is_meta:
            self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's init (xavier linears, zero biases, N(0, 0.02) embedders, zero final layer and AdaLN-Zero
        modulation) plus PixArt-α's (N(0, 0.02) t_block, zero cross-attention output projection)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        if self.t_block is not None:
            nn.init.normal_(self.t_block[1].weight, std=0.02)
        for block in self.blocks:
            if self.config.adaln == "zero":
                nn.init.zeros_(block.adaLN_modulation[-1].weight)
                nn.init.zeros_(block.adaLN_modulation[-1].bias)
            if block.cross_attn is not None:
                nn.init.zeros_(block.cross_attn.proj.weight)
        if self.config.adaln == "zero":
            nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
            nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def unpatchify(self, x: Tensor) -> Tensor:
        """(B, T, p²·C) → (B, C, H, W)."""
        c, p = self.config.out_channels, self.config.patch_size
        h = w = self.config.input_size // p
        x = x.reshape(x.shape[0], h, w, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, h * p, w * p)

    def _conditioning(self, t: Tensor, cond, drop: Tensor | None, batch: int):
        """c (B, D) from time (+ class); text tokens (B, L, D) and mask (B, L) or None."""
        if self.config.discrete_time:
            t = t.round()
        c = self.t_embedder(t.expand(batch) if t.dim() == 0 else t)  # (B, D)
        y = mask = None
        if self.y_embedder is not None:
            c = c + self.y_embedder(cond, batch, drop)
        elif self.caption_embedder is not None:
            y, mask = self.caption_embedder(cond, batch, drop)
        return c, y, mask

    def deferred_residuals(self, h: Tensor, t0: Tensor) -> bool:
        """Whether the blocks chain through ``DiTBlock.forward_deferred``: the fused norm kernel can run
        (``fused_norm.usable``: enabled, CUDA, no autograd graph; or ``fused_norm_train.usable`` while an
        autograd graph is recorded) and the blocks have no cross-attention."""
        kernel = fused_norm.usable(h, t0) or fused_norm_train.usable(h)
        return self.caption_embedder is None and len(self.blocks) > 0 and kernel

    def fused_residuals(self, h: Tensor, t0: Tensor) -> bool:
        """Whether the blocks chain through ``DiTBlock.forward_fused_residual``: ``sm90_gemm.residual_chain``
        (by default: an sm_90 GPU with the gated-residual kernel built), sampling (no autograd graph), blocks
        without cross-attention. (The GEMM op itself falls back to PyTorch where its kernel cannot run.)"""
        return (self.caption_embedder is None and len(self.blocks) > 0 and not records_grad(h, t0)
                and sm90_gemm.residual_chain(h.device))

    def forward(self, x: Tensor, t: Tensor, cond=None, drop: Tensor | None = None) -> Tensor:
        B = x.shape[0]
        c, y, mask = self._conditioning(t, cond, drop, B)
        h = self.x_embedder(x) + self.pos_embed.to(x.dtype)  # (B, T, D)
        if self.residual_dtype is not None:
            h = h.to(self.residual_dtype)
        t0 = self.t_block(c) if self.t_block is not None else c  # (B, 6D) single | (B, D) zero
        if self.fused_residuals(h, t0):  # residuals added in the proj / fc2 GEMMs' epilogues
            for block in self.blocks:
                h = block.forward_fused_residual(h, t0)
            out = self.unpatchify(self.final_layer(h, c))
        elif self.deferred_residuals(h, t0):  # the fused norm kernels: residuals added in their passes
            pending = None
            for block in self.blocks:
                h, pending = block.forward_deferred(h, t0, pending)
            out = self.unpatchify(self.final_layer(h, c, pending))
        else:
            for block in self.blocks:
                h = block(h, t0, y, mask)
            out = self.unpatchify(self.final_layer(h, c))  # (B, C_out, H, W)
        return out[:, : self.config.in_channels] if self.config.learn_sigma else out


def build_dit(name_or_config: str | DiTConfig, **overrides) -> DiT:
    """A freshly initialised DiT from a preset name (with overrides) or a config."""
    cfg = name_or_config if isinstance(name_or_config, DiTConfig) else get_preset(name_or_config, **overrides)
    return DiT(cfg)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (buffers such as ``pos_embed`` excluded)."""
    return sum(p.numel() for p in module.parameters())
