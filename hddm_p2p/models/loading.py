"""Load an expert directory into ``(module, ExpertSpec, description)`` for the ensemble.

The DiT is built on the meta device (no allocation, no init), then its parameters are *assigned* the
tensors of ``model.safetensors`` as ``safetensors.torch.load_file(..., device=...)`` maps them (the file
is memory-mapped, so only pages that are touched are read). A converted ImageNet DiT carries
``discrete_time = True`` in its config, so the model itself rounds t_scaled = 999·s to DiT's integer grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from hddm_p2p.diffusion import ExpertSpec
from hddm_p2p.errors import ManifestError, ShapeError
from hddm_p2p.models.dit import DiT, DiTConfig

FORMAT = "hddm-expert/1"


def read_arch(weights: Path) -> DiTConfig:
    """The DiT config stored in a weights file's metadata."""
    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("hddm.format") != FORMAT or "hddm.arch" not in meta:
        raise ManifestError(f"{weights} is not an hddm expert (metadata hddm.format={meta.get('hddm.format')!r})")
    return DiTConfig.from_dict(json.loads(meta["hddm.arch"]))


def check_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise ``ShapeError`` naming the first missing, unexpected or mis-shaped parameter."""
    expected = model.state_dict()
    for name, t in expected.items():
        if name not in state:
            raise ShapeError(f"{source}: missing parameter {name} {tuple(t.shape)}")
        if tuple(state[name].shape) != tuple(t.shape):
            raise ShapeError(f"{source}: parameter {name} has shape {tuple(state[name].shape)}, "
                             f"the architecture needs {tuple(t.shape)}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ShapeError(f"{source}: unexpected parameter {extra[0]} (and {len(extra) - 1} more)")


def spec_from_description(desc: dict) -> ExpertSpec:
    """``ExpertSpec`` from ``expert.json``: clip 1 for pixel experts, 20 for latents (the paper's value)."""
    clip = 1.0 if desc["data_space"]["kind"] == "pixel" else 20.0
    return ExpertSpec(desc["prediction"], desc["schedule"], time_scale=float(desc["time_scale"]), clip=clip)


def load_expert(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """``(model, ExpertSpec, description)`` from an expert directory; the model is in eval mode."""
    path = Path(path)
    weights, desc_path = path / "model.safetensors", path / "expert.json"
    for p in (weights, desc_path):
        if not p.exists():
            raise ManifestError(f"{p} is missing; is {path} an expert directory written by `hddm train expert`?")
    desc = json.loads(desc_path.read_text())
    return load_weights(weights, device, dtype), spec_from_description(desc), desc


def load_weights(weights: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> DiT:
    """The DiT stored in one ``model.safetensors`` (architecture from its metadata), in eval mode, no grad."""
    cfg = read_arch(Path(weights))
    with torch.device("meta"):
        model = DiT(cfg)
    state = load_file(str(weights), device=str(device))
    check_state(model, state, str(weights))
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    model.load_state_dict(state, assign=True)
    return model.eval().requires_grad_(False)
