"""Everything the experts need before training: data in memory, the FD classifier, semantic clusters,
and the reference feature statistics each configuration is measured against.

    CIFAR-10 shards ─► uint8 (N, 3, 32, 32) ─► classifier (kept recipe) ─► penultimate features (N, D)
                                            └─► k-means (K) on those features ─► cluster of every train image
    test images ─► nearest centroid ─► per-cluster test subsets ─► reference (μ, Σ) for "test", "cluster:j"
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hddm_p2p.errors import SpecError
from hddm_p2p.eval.classifier import ClassifierExtractor, get_recipe, save_classifier
from hddm_p2p.eval.frechet import Stats, StatsAccumulator
from hddm_p2p.experiments.config import ClassifierConfig, ClusterConfig, DataConfig
from hddm_p2p.experiments.shards import load_shard_sets
from hddm_p2p.train.data import InMemoryData

Tensor = torch.Tensor


@dataclass
class Clusters:
    """Cluster id of every train (N,) and test (M,) image, the (K, D) centroids and their feature space."""

    train: np.ndarray
    test: np.ndarray
    centroids: np.ndarray
    feature_extractor: str
    levels: str

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def sizes(self, which: str = "train") -> list[int]:
        return np.bincount(getattr(self, which), minlength=self.k).tolist()

    def expert_block(self, j: int, assignments_sha256: str) -> dict:
        """expert.json's ``cluster`` block of an expert trained on cluster ``j`` (docs/contracts.md)."""
        return {"id": j, "feature_extractor": self.feature_extractor, "feature_dim": int(self.centroids.shape[1]),
                "centroid": self.centroids[j].tolist(), "size": int((self.train == j).sum()),
                "assignments_sha256": assignments_sha256}

    def assignments_sha256(self, keys: list[str]) -> str:
        """sha256 of the canonical assignments.json ({key: cluster}) these labels would be written as."""
        doc = json.dumps({k: int(c) for k, c in zip(keys, self.train)}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(doc.encode()).hexdigest()


def load_data(cfg: DataConfig) -> tuple[InMemoryData, InMemoryData]:
    """(train, test) decoded into memory, every shard in parallel; labels are CIFAR-10 classes. Relative
    paths are resolved against the working directory."""
    train, test = load_shard_sets([(cfg.train, cfg.train_limit), (cfg.test, cfg.test_limit)], cfg.resolution)
    return train, test


def train_fd_classifier(cfg: ClassifierConfig, train: InMemoryData, test: InMemoryData, out: Path,
                        device: torch.device, progress: bool = True) -> ClassifierExtractor:
    """Train the project's CIFAR-10 classifier with the kept recipe (plus overrides) and load it as an extractor."""
    from hddm_p2p.eval.classifier_train import accuracy, fit

    try:
        recipe = dataclasses.replace(get_recipe(cfg.recipe), **cfg.overrides)
    except TypeError as e:
        raise SpecError(f"classifier.overrides: {e}; use fields of ClassifierRecipe") from None
    n, m = recipe.train_limit or len(train), recipe.test_limit or len(test)
    net, log = fit(recipe, train.x[:n], train.labels[:n], device, progress)
    acc = accuracy(net, test.x[:m], test.labels[:m])
    log.update(train=train.source, test=test.source, n_train=int(min(n, len(train))), recipe_name=cfg.recipe)
    save_classifier(out, net, recipe, acc, int(min(m, len(test))), log)
    return ClassifierExtractor.load(out, device=device)


@torch.no_grad()
def features(extractor, x: Tensor, batch: int = 1000) -> Tensor:
    """Features (N, D) float32 on the CPU of uint8 images x (N, 3, H, W)."""
    return torch.cat([extractor(x[i:i + batch]).float().cpu() for i in range(0, len(x), batch)])


def pixel_features(x: Tensor, side: int = 8) -> Tensor:
    """``pixels-8x8`` features: area-downsampled RGB in [0, 1], flattened in (H, W, C) order like PixelExtractor."""
    small = F.adaptive_avg_pool2d(x.float() / 255.0, side)  # (N, 3, side, side)
    return small.permute(0, 2, 3, 1).reshape(len(x), -1)


def make_clusters(cfg: ClusterConfig, train_feats: Tensor, test_feats: Tensor, extractor_id: str) -> Clusters:
    """k-means (faiss, the project's ``cluster_features``) on train features; test images by nearest centroid."""
    from hddm_p2p.cluster.assign import nearest_centroid
    from hddm_p2p.cluster.kmeans import KMeansConfig, cluster_features

    result = cluster_features(train_feats.numpy().astype(np.float32), KMeansConfig.from_levels(cfg.levels, cfg.k, cfg.seed))
    test_labels, _ = nearest_centroid(test_feats.numpy().astype(np.float32), result.centroids)
    return Clusters(result.labels.astype(np.int64), test_labels, result.centroids, extractor_id, result.levels)


def reference_stats(feats: Tensor, clusters: Clusters, extractor: ClassifierExtractor) -> dict[str, Stats]:
    """Reference statistics of the test set ("test") and of each cluster's test subset ("cluster:j")."""
    out = {}
    subsets = {"test": torch.ones(len(feats), dtype=torch.bool)}
    subsets.update({f"cluster:{j}": torch.from_numpy(clusters.test == j) for j in range(clusters.k)})
    for name, mask in subsets.items():
        acc = StatsAccumulator()
        acc.update(feats[mask])
        out[name] = acc.stats(extractor.id, {**extractor.info, "source": name})
    return out
