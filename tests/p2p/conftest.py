"""Fixtures for manifests, signing, trust, publish and fetch: a home with a key, a local store, an expert dir.

The expert directory is made without the training code: a tiny real safetensors file (torch tensors saved with
``safetensors.torch.save_file``) and an ``expert.json`` exactly as docs/contracts.md describes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from hddm_p2p.p2p.keys import KeyStore
from hddm_p2p.p2p.store import LocalStore
from hddm_p2p.p2p.trust import TrustStore


def expert_description(name: str = "cifar-fm-c0", **changes: Any) -> dict[str, Any]:
    """An ``expert.json`` per docs/contracts.md (pixel space, unconditional, with a cluster)."""
    desc = {
        "kind": "expert", "name": name, "objective": "fm", "prediction": "velocity", "schedule": "flow-linear",
        "time_scale": 1.0,
        "architecture": {"family": "dit", "preset": "DiT-Tiny", "config": {"depth": 2, "hidden": 32, "patch": 4}},
        "data_space": {"kind": "pixel", "resolution": 8, "channels": 3, "value_range": [-1.0, 1.0], "vae": None},
        "conditioning": {"kind": "none", "num_classes": None, "class_names": None, "text_encoder": None},
        "cluster": {"id": 2, "feature_extractor": "pixels-8x8", "feature_dim": 4, "centroid": [0.25, -0.5, 1.0, 0.0],
                    "size": 1234, "assignments_sha256": "ab" * 32},
        "training": {"steps": 10, "batch_size": 4, "seed": 0, "final_loss": 0.12, "images_seen": 40,
                     "wall_time_s": 1.5, "device": "cpu", "dataset": "cifar10/train-*.tar.gz"},
    }
    desc.update(changes)
    return desc


def make_expert_dir(path: Path, name: str = "cifar-fm-c0", seed: int = 0, **changes: Any) -> Path:
    """A directory holding model.safetensors (random tiny tensors) and expert.json."""
    path.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    tensors = {"w": torch.randn(16, 8, generator=g), "b": torch.zeros(16)}
    save_file(tensors, str(path / "model.safetensors"), metadata={"hddm.format": "hddm-expert/1", "hddm.arch": "{}"})
    (path / "expert.json").write_text(json.dumps(expert_description(name, **changes), indent=2))
    return path


@pytest.fixture
def home(hddm_home: Path) -> Path:
    """``HDDM_HOME`` in a temp dir, with a key ``alice`` that is also trusted."""
    info = KeyStore().generate("alice")
    TrustStore().add(info.did, "alice")
    return hddm_home


@pytest.fixture
def alice(home: Path):
    return KeyStore().info("alice")


@pytest.fixture
def store(home: Path) -> LocalStore:
    return LocalStore()


@pytest.fixture
def expert_dir(tmp_path: Path) -> Path:
    return make_expert_dir(tmp_path / "expert")
