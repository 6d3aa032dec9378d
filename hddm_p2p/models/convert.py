"""Initialise an expert from a facebookresearch/DiT ImageNet checkpoint (e.g. ``DiT-XL-2-256x256.pt``).

The file is read with ``torch.load(..., weights_only=True)`` (tensors only, never arbitrary unpickling).
Transferred as is: patch embedding ``x_embedder.proj``, positional embedding ``pos_embed``, timestep
embedder ``t_embedder.mlp`` (unmodified: the expert is fed t_DiT = round(999·s) through ``time_scale = 999``
and ``discrete_time = True``), and every block's ``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``.
Re-initialised: ``final_layer.linear`` (the target changes with the objective), text projection and
cross-attention (new modality). Removed: the ImageNet class embedding ``y_embedder``.

AdaLN-Zero → AdaLN-Single (PixArt-α §2.3 "re-parameterization"): DiT block i computes its six modulation
signals S_i(c) = W_i·SiLU(c) + b_i. AdaLN-Single computes S_i(t) = E_i + W·SiLU(e(t)) + b with e(t) the
timestep embedding. We set (W, b) = (W_0, b_0), the first block's layer, and

    E_i = [W_i·SiLU(e(t*)) + b_i] − [W_0·SiLU(e(t*)) + b_0],   reshaped to (6, D),   t* = 500 (as PixArt-α),

and for the final layer (S = table + e(t)): table = reshape(W_f·SiLU(e(t*)) + b_f, (2, D)) − e(t*).
Exact: block 0 at every t (E_0 = 0); every block and the final modulation at t = t*. Approximate: blocks
i > 0 away from t*, off by (W_i − W_0)·(SiLU(e(t)) − SiLU(e(t*))). DiT's class signal is dropped (c = e(t)),
which PixArt-α also does; fine-tuning recovers the rest.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from hddm_p2p.errors import DataError, ShapeError
from hddm_p2p.models.dit import DiT, DiTConfig
from hddm_p2p.models.layers import TimestepEmbedder

Tensor = torch.Tensor
T_STAR = 500.0
_BLOCK_PARTS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


def load_dit_checkpoint(path: Path) -> dict[str, Tensor]:
    """The state dict of a DiT checkpoint: a plain state dict, or the ``ema`` entry of a training checkpoint."""
    if not Path(path).exists():
        raise DataError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors of many kinds: report as one line
        raise DataError(f"cannot read {path} as a weights-only PyTorch checkpoint: {e}") from None
    for key in ("ema", "model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            return state[key]
    return state


def _take(src: dict, name: str, shape: torch.Size) -> Tensor:
    if name not in src:
        raise ShapeError(f"checkpoint has no parameter {name}; is it a facebookresearch/DiT checkpoint of this depth?")
    if src[name].shape != shape:
        raise ShapeError(f"checkpoint parameter {name} has shape {tuple(src[name].shape)}, the architecture needs "
                         f"{tuple(shape)}; pick the matching --arch / resolution / channels")
    return src[name]


def _modulation(src: dict, prefix: str, c: Tensor) -> Tensor:
    """DiT's adaLN_modulation(c) = Linear(SiLU(c)) with the checkpoint's weights, (1, k·D)."""
    return F.linear(F.silu(c), src[f"{prefix}.adaLN_modulation.1.weight"].float(),
                    src[f"{prefix}.adaLN_modulation.1.bias"].float())


def _t_star_embedding(src: dict, freq_size: int) -> Tensor:
    """e(t*) with the checkpoint's timestep embedder, (1, D)."""
    f = TimestepEmbedder.sinusoid(torch.tensor([T_STAR]), freq_size)
    h = F.linear(f, src["t_embedder.mlp.0.weight"].float(), src["t_embedder.mlp.0.bias"].float())
    return F.linear(F.silu(h), src["t_embedder.mlp.2.weight"].float(), src["t_embedder.mlp.2.bias"].float())


def convert_dit_state(src: dict[str, Tensor], model: DiT) -> dict[str, Tensor]:
    """The entries of ``model``'s state dict taken (or derived) from the DiT checkpoint ``src``."""
    target = model.state_dict()
    shared = ["x_embedder.proj.weight", "x_embedder.proj.bias", "pos_embed", "t_embedder.mlp.0.weight",
              "t_embedder.mlp.0.bias", "t_embedder.mlp.2.weight", "t_embedder.mlp.2.bias"]
    shared += [f"blocks.{i}.{part}.{w}" for i in range(model.config.depth) for part in _BLOCK_PARTS
               for w in ("weight", "bias")]
    out = {name: _take(src, name, target[name].shape).to(target[name].dtype) for name in shared}
    if model.config.adaln == "zero":
        names = [f"blocks.{i}.adaLN_modulation.1.{w}" for i in range(model.config.depth) for w in ("weight", "bias")]
        names += ["final_layer.adaLN_modulation.1.weight", "final_layer.adaLN_modulation.1.bias"]
        out.update({n: _take(src, n, target[n].shape).to(target[n].dtype) for n in names})
    else:
        out.update(_adaln_single(src, model, target))
    if f"blocks.{model.config.depth}.attn.qkv.weight" in src:
        raise ShapeError(f"checkpoint has more than {model.config.depth} blocks; pick the matching --arch")
    return out


@torch.no_grad()
def _adaln_single(src: dict, model: DiT, target: dict) -> dict[str, Tensor]:
    D = model.config.hidden_size
    for n in ("blocks.0.adaLN_modulation.1.weight", "final_layer.adaLN_modulation.1.weight"):
        _take(src, n, torch.Size([6 * D if "blocks" in n else 2 * D, D]))
    e = _t_star_embedding(src, model.config.freq_size)  # (1, D)
    base = _modulation(src, "blocks.0", e)  # (1, 6D): global MLP's output at t*
    out = {"t_block.1.weight": src["blocks.0.adaLN_modulation.1.weight"], "t_block.1.bias": src["blocks.0.adaLN_modulation.1.bias"]}
    for i in range(model.config.depth):
        _take(src, f"blocks.{i}.adaLN_modulation.1.weight", torch.Size([6 * D, D]))
        out[f"blocks.{i}.scale_shift_table"] = (_modulation(src, f"blocks.{i}", e) - base).reshape(6, D)
    out["final_layer.scale_shift_table"] = _modulation(src, "final_layer", e).reshape(2, D) - e
    return {k: v.to(target[k].dtype) for k, v in out.items()}


def init_from_dit_checkpoint(path: Path, config: DiTConfig) -> DiT:
    """A fresh DiT of ``config`` (``discrete_time`` switched on) initialised from a DiT checkpoint."""
    model = DiT(config.replace(discrete_time=True))
    model.load_state_dict(convert_dit_state(load_dit_checkpoint(path), model), strict=False)
    return model
