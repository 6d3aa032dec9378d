"""Analytic forward FLOPs of a DiT, from its config (2 FLOPs per multiply-add).

Per image, with T = (input/p)² tokens, D width, r MLP ratio, N blocks, L text tokens:

    block     qkv 3TD² + out-proj TD² + MLP 2rTD²  + attention QKᵀ and AV 2T²D
    text      cross-attn q TD² + kv 2LD² + proj TD² + QKᵀ/AV 2TLD          (text experts only)
    modulate  AdaLN-Zero 6D² per block + 2D² final | AdaLN-Single 6D² once (per image, not per token)
    ends      patch embed T·p²C·D + final linear T·D·p²C_out + timestep MLP 256D + D² (+ caption MLP L(ED + D²))

MACs summed and doubled; training ≈ 3× forward (backward = 2× forward). Element-wise ops (norms,
GELU, softmax) are left out, as in the DiT paper, whose "Gflops" (118.6 for DiT-XL/2 at 256²) are MACs.
"""

from __future__ import annotations

from hddm_p2p.models.dit import DiTConfig


def dit_macs(cfg: DiTConfig) -> int:
    """Multiply-accumulates of one forward pass for one image."""
    T, D, N, r = cfg.num_tokens, cfg.hidden_size, cfg.depth, cfg.mlp_ratio
    per_block = 4 * T * D * D + 2 * int(r * D) * T * D + 2 * T * T * D
    if cfg.condition == "text":
        L = cfg.max_tokens
        per_block += 2 * T * D * D + 2 * L * D * D + 2 * T * L * D
    modulation = N * 6 * D * D + 2 * D * D if cfg.adaln == "zero" else 6 * D * D
    p2 = cfg.patch_size ** 2
    ends = T * p2 * cfg.in_channels * D + T * D * p2 * cfg.out_channels + cfg.freq_size * D + D * D
    if cfg.condition == "text":
        ends += cfg.max_tokens * (cfg.text_width * D + D * D)
    return N * per_block + modulation + ends


def dit_flops(cfg: DiTConfig, training: bool = False) -> int:
    """FLOPs per image: 2·MACs forward; ×3 for a training step (forward + backward)."""
    return 2 * dit_macs(cfg) * (3 if training else 1)
