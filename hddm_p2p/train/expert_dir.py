"""The expert directory (docs/contracts.md): ``model.safetensors`` + ``expert.json`` + ``metrics.jsonl``.

``model.safetensors`` holds the EMA weights with metadata ``{"hddm.format": "hddm-expert/1",
"hddm.arch": <DiTConfig JSON>}``; ``expert.json`` the unsigned description that ``hddm publish`` signs.
Both are written atomically (temp file + ``os.replace``), weights first, so a directory with an
``expert.json`` always has the weights it describes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from hddm_p2p.models.dit import DiTConfig
from hddm_p2p.train.data import atomic_write_bytes
from hddm_p2p.train.objectives import ObjectiveConfig

FORMAT = "hddm-expert/1"
WEIGHTS, DESCRIPTION, METRICS = "model.safetensors", "expert.json", "metrics.jsonl"


def data_space(space: str, resolution: int, channels: int, vae: dict | None = None) -> dict:
    """``data_space`` block: pixels in [−1, 1], or latents of ``vae`` ({id, scaling_factor, image_resolution})."""
    if space == "pixel":
        return {"kind": "pixel", "resolution": resolution, "channels": channels, "value_range": [-1.0, 1.0], "vae": None}
    return {"kind": "latent", "resolution": resolution, "channels": channels, "value_range": [-20.0, 20.0], "vae": vae}


def conditioning(cfg: DiTConfig, class_names: list[str] | None = None, text_encoder: dict | None = None) -> dict:
    """``conditioning`` block; ``text_encoder`` is {id, width, max_tokens} for text experts."""
    return {"kind": cfg.condition,
            "num_classes": cfg.num_classes if cfg.condition == "class" else None,
            "class_names": class_names if cfg.condition == "class" else None,
            "text_encoder": text_encoder if cfg.condition == "text" else None}


def describe(name: str, obj: ObjectiveConfig, arch: DiTConfig, space: dict, cond: dict,
             cluster: dict | None, training: dict) -> dict:
    """The ``expert.json`` object, field for field as in docs/contracts.md."""
    return {
        "kind": "expert",
        "name": name,
        "objective": obj.objective,
        "prediction": obj.prediction.value,
        "schedule": obj.schedule,
        "time_scale": float(obj.time_scale),
        "architecture": {"family": "dit", "preset": arch.preset, "config": arch.to_dict()},
        "data_space": space,
        "conditioning": cond,
        "cluster": cluster,
        "training": training,
    }


def write_weights(path: Path, state: dict[str, torch.Tensor], arch: DiTConfig) -> None:
    """EMA weights as safetensors (contiguous CPU copies) with the architecture in the metadata."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"hddm.format": FORMAT, "hddm.arch": arch.to_json()})
    os.chmod(tmp, 0o644)  # a shareable artifact, not a secret
    os.replace(tmp, path)


def write_expert_dir(out: Path, state: dict[str, torch.Tensor], arch: DiTConfig, description: dict) -> Path:
    """Write weights then ``expert.json`` into ``out`` (created); returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_weights(out / WEIGHTS, state, arch)
    atomic_write_bytes(out / DESCRIPTION, (json.dumps(description, indent=2) + "\n").encode())
    return out
