"""Nearest-centroid labelling with faiss: label(x) = argmin_k ‖x − c_k‖²."""

from __future__ import annotations

import faiss
import numpy as np

from hddm_p2p.errors import ShapeError


def check_width(features: np.ndarray, centroids: np.ndarray, what: str = "features") -> None:
    """ShapeError unless features (N, D) and centroids (K, D) are 2-D with the same D."""
    if features.ndim != 2 or centroids.ndim != 2:
        raise ShapeError(f"{what} and centroids must be 2-D (rows, dim); got {features.shape} and {centroids.shape}")
    if features.shape[1] != centroids.shape[1]:
        raise ShapeError(f"{what} have width {features.shape[1]} but the centroids have width {centroids.shape[1]}; "
                         f"use the feature extractor the centroids were computed with")


def nearest_centroid(features: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,) int64, squared distances (N,) float32) of each row's nearest centroid (exact, IndexFlatL2)."""
    check_width(features, centroids)
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    dist, idx = index.search(np.ascontiguousarray(features, dtype=np.float32), 1)  # (N, 1) each
    return idx[:, 0].astype(np.int64), dist[:, 0]


def save_centroids(path, centroids: np.ndarray, extractor_id: str, levels: str) -> None:
    """``centroids.safetensors``: tensor "centroids" (K, D) float32 + metadata naming the feature space."""
    import os

    import torch
    from safetensors.torch import save_file

    k, d = centroids.shape
    meta = {"feature_extractor": extractor_id, "feature_dim": str(d), "k": str(k), "levels": levels}
    tmp = f"{path}.tmp"
    save_file({"centroids": torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))}, tmp, metadata=meta)
    os.replace(tmp, path)


def load_centroids(path) -> tuple[np.ndarray, dict]:
    """(centroids (K, D) float32, metadata) from a file written by ``save_centroids``."""
    from safetensors import safe_open

    from hddm_p2p.errors import DataError

    try:
        with safe_open(str(path), "np") as f:
            return f.get_tensor("centroids").astype(np.float32), dict(f.metadata() or {})
    except (OSError, KeyError, ValueError) as e:  # missing file, missing tensor, not safetensors
        raise DataError(f"cannot read centroids from {path}: {e}") from None
