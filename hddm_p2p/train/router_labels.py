"""Cluster labels for router training: from an assignments file, or from experts' published centroids.

The uncoordinated case: strangers published experts whose manifests declare ``cluster.centroid`` in
the feature space ``cluster.feature_extractor``. A user labels each local sample with the expert whose
centroid is nearest to the sample's features in that space (argmin_j ‖f(x) − c_j‖²), so router column j
is expert j. Experts must share one feature space; a mismatch is refused, naming expert and field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hddm_p2p.errors import CompatibilityError, DataError, ManifestError


@dataclass(frozen=True)
class ExpertRef:
    """An expert as a router sees it: its identity (router column name) and its description."""

    id: str
    description: dict
    source: str


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_expert(path: str | Path) -> ExpertRef:
    """An expert directory (id ``sha256:<model.safetensors>``) or a manifest file (id = its manifest CID)."""
    p = Path(path)
    if p.is_dir():
        if not (p / "expert.json").exists() or not (p / "model.safetensors").exists():
            raise ManifestError(f"{p} is not an expert directory (needs expert.json and model.safetensors)")
        return ExpertRef(f"sha256:{_sha256_file(p / 'model.safetensors')}", json.loads((p / "expert.json").read_text()),
                         str(p))
    if not p.is_file():
        raise ManifestError(f"{p} is neither an expert directory nor a manifest file")
    from hddm_p2p.p2p.cid import cid_of_bytes
    from hddm_p2p.p2p.manifests import EXPERT_SCHEMA, manifest_bytes, verify_signature
    from hddm_p2p.p2p.signing import parse_json

    doc = parse_json(p.read_bytes())
    if doc.get("schema") != EXPERT_SCHEMA:
        raise ManifestError(f"{p} is a {doc.get('schema')!r} document, not an expert manifest ({EXPERT_SCHEMA})")
    manifest = verify_signature(doc)  # signed by its own publisher; whether to trust them is assemble's call
    return ExpertRef(cid_of_bytes(manifest_bytes(manifest)), manifest.to_doc(), str(p))


def _name(desc: dict, i: int) -> str:
    return f"expert {i} ({desc.get('name', '?')})"


def expert_centroids(descriptions: list[dict]) -> tuple[np.ndarray, str]:
    """(centroids (K, D) float32 in expert order, feature extractor id); CompatibilityError on any mismatch."""
    clusters = []
    for i, d in enumerate(descriptions):
        c = d.get("cluster")
        if not c or "centroid" not in c or "feature_extractor" not in c:
            raise CompatibilityError(f"{_name(d, i)} declares no cluster.centroid/cluster.feature_extractor; "
                                     f"a router cannot be trained for it from local data")
        clusters.append(c)
    ref = clusters[0]
    for i, c in enumerate(clusters[1:], start=1):
        for field in ("feature_extractor", "feature_dim"):
            if c.get(field) != ref.get(field):
                raise CompatibilityError(f"{_name(descriptions[i], i)} has cluster.{field} {c.get(field)!r} but "
                                         f"{_name(descriptions[0], 0)} has {ref.get(field)!r}; experts must share "
                                         f"one feature space")
        if len(c["centroid"]) != len(ref["centroid"]):
            raise CompatibilityError(f"{_name(descriptions[i], i)} has a centroid of width {len(c['centroid'])}, "
                                     f"expert 0 of width {len(ref['centroid'])}")
    return np.asarray([c["centroid"] for c in clusters], dtype=np.float32), ref["feature_extractor"]


def check_data_spaces(descriptions: list[dict]) -> dict:
    """The experts' common ``data_space``; CompatibilityError naming the first expert that differs."""
    ref = descriptions[0].get("data_space")
    for i, d in enumerate(descriptions[1:], start=1):
        if d.get("data_space") != ref:
            raise CompatibilityError(f"{_name(d, i)} has data_space {d.get('data_space')} but expert 0 has {ref}; "
                                     f"one router serves one data space")
    return ref


def labels_from_assignments(keys: list[str], assignments: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(row indices of ``keys`` found in ``assignments``, their labels); DataError if none match."""
    rows = [i for i, k in enumerate(keys) if k in assignments]
    if not rows:
        raise DataError(f"none of the {len(keys)} sample keys appear in the assignments file; "
                        f"use the data the clustering was run on")
    return np.asarray(rows), np.asarray([int(assignments[keys[i]]) for i in rows], dtype=np.int64)


def labels_from_centroids(data: str, keys: list[str], extractor_id: str, centroids: np.ndarray,
                          device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """Nearest-centroid label (N,) for each of ``keys``, features computed from the original images of ``data``."""
    from hddm_p2p.cluster._reader import iter_samples
    from hddm_p2p.cluster.assign import check_width, nearest_centroid
    from hddm_p2p.cluster.features import extractor_from_id

    extractor = extractor_from_id(extractor_id, device)
    check_width(np.zeros((1, extractor.dim), np.float32), centroids, f"features of {extractor_id}")
    wanted, feats, batch, names = set(keys), {}, [], []
    for s in iter_samples(data):
        if s.key in wanted:
            batch.append(s.image()), names.append(s.key)
        if len(batch) == batch_size:
            feats.update(zip(names, extractor(batch)))
            batch, names = [], []
    if batch:
        feats.update(zip(names, extractor(batch)))
    return nearest_centroid(np.stack([feats[k] for k in keys]), centroids)[0]
