"""Expert networks: the DiT (AdaLN-Single / AdaLN-Zero), its presets, checkpoint conversion and loading."""

from hddm_p2p.models.dit import PRESETS, DiT, DiTConfig, build_dit, count_parameters, get_preset
from hddm_p2p.models.layers import (
    Attention,
    CaptionEmbedder,
    CrossAttention,
    DiTBlock,
    FinalLayer,
    LabelEmbedder,
    Mlp,
    PatchEmbed,
    TimestepEmbedder,
    modulate,
    sincos_pos_embed,
)

__all__ = ["PRESETS", "DiT", "DiTConfig", "build_dit", "count_parameters", "get_preset", "Attention",
           "CaptionEmbedder", "CrossAttention", "DiTBlock", "FinalLayer", "LabelEmbedder", "Mlp", "PatchEmbed",
           "TimestepEmbedder", "modulate", "sincos_pos_embed", "load_expert"]


def load_expert(path, device="cpu", dtype=None):
    """``(module, ExpertSpec, description)`` from an expert directory; see ``hddm_p2p.models.loading``."""
    from hddm_p2p.models.loading import load_expert as _load

    return _load(path, device=device, dtype=dtype)
