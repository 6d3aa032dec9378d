"""k-means with faiss: flat, or hierarchical (many fine clusters, then coarse clusters over their centroids).

Hierarchical clustering follows the decentralized-diffusion recipe: k-means into ``fine`` clusters,
then k-means of the fine centroids (weighted by their sizes) into ``k`` coarse clusters; a sample
belongs to the coarse cluster of its fine cluster. Reported centroids are the mean feature of each
final cluster's members. The same seed gives the same clustering.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import faiss
import numpy as np

from hddm_p2p.cluster.assign import nearest_centroid
from hddm_p2p.errors import DataError, SpecError


@dataclass(frozen=True)
class KMeansConfig:
    """``k`` final clusters; ``fine`` > k makes it hierarchical (None: flat)."""

    k: int
    fine: int | None = None
    seed: int = 0
    niter: int = 25  # faiss's default; Lloyd iterations mostly converge well before on ~1e5 points
    nredo: int = 3  # k-means++ restarts; the run with the lowest objective is kept

    def __post_init__(self):
        if self.k < 1:
            raise SpecError(f"--k must be at least 1, got {self.k}")
        if self.fine is not None and self.fine <= self.k:
            raise SpecError(f"--levels fine:coarse needs fine > coarse, got {self.fine}:{self.k}")

    @property
    def levels(self) -> str:
        return f"{self.fine}:{self.k}" if self.fine else f"flat:{self.k}"

    @classmethod
    def from_levels(cls, levels: str | None, k: int, seed: int = 0) -> "KMeansConfig":
        """``None`` or ``flat`` → flat with k; ``"FINE:COARSE"`` → hierarchical (COARSE must equal k if both given)."""
        if levels in (None, "", "flat"):
            return cls(k, None, seed)
        fine, _, coarse = levels.partition(":")
        if not (fine.isdigit() and coarse.isdigit()):
            raise SpecError(f"--levels must look like FINE:COARSE (e.g. 64:8) or 'flat', got {levels!r}")
        if int(coarse) != k:
            raise SpecError(f"--levels {levels} ends in {coarse} coarse clusters but --k is {k}; make them equal")
        return cls(k, int(fine), seed)


@dataclass(frozen=True)
class Clustering:
    """``labels`` (N,) int64 in [0, K); ``centroids`` (K, D) float32 member means; ``sizes`` (K,)."""

    labels: np.ndarray
    centroids: np.ndarray
    sizes: np.ndarray
    levels: str


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator, weights: np.ndarray | None) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): pick c_j with probability ∝ w_i·min_l ‖x_i − c_l‖²."""
    w = np.ones(len(x)) if weights is None else weights.astype(np.float64)
    chosen = [int(rng.choice(len(x), p=w / w.sum()))]
    d2 = ((x - x[chosen[0]]) ** 2).sum(1, dtype=np.float64)  # (N,)
    for _ in range(1, k):
        p = w * d2
        i = int(rng.choice(len(x), p=p / p.sum())) if p.sum() > 0 else int(rng.integers(len(x)))
        chosen.append(i)
        d2 = np.minimum(d2, ((x - x[i]) ** 2).sum(1, dtype=np.float64))
    return x[chosen]


def _kmeans(x: np.ndarray, k: int, config: KMeansConfig, weights: np.ndarray | None = None) -> np.ndarray:
    """(k, D) centroids of x (N, D): best of ``nredo`` faiss Lloyd runs from k-means++ seeds, all points used."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    # One OpenMP thread on small problems: on a busy CPU, spinning threads cost 100× the arithmetic.
    faiss.omp_set_num_threads(1 if x.size * k < 50_000_000 else os.cpu_count() or 1)
    best, best_obj = None, np.inf
    # k-means++ costs N·k·D per restart; past ~5e10 (e.g. 10k fine clusters of 1M DINOv2 vectors) use faiss's
    # random-sample seeding instead, which many fine clusters tolerate well.
    use_pp = len(x) * k * x.shape[1] <= 5e10
    for r in range(config.nredo):
        init = _kmeans_pp(x, k, np.random.default_rng([config.seed, r]), weights) if use_pp else None
        km = faiss.Kmeans(x.shape[1], k, niter=config.niter, seed=config.seed + r, verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=1 << 30)
        km.train(x, weights=weights, init_centroids=init)
        if km.obj[-1] < best_obj:
            best, best_obj = km.centroids.copy(), km.obj[-1]
    return best


def _member_means(x: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.bincount(labels, minlength=k)
    empty = np.flatnonzero(sizes == 0)
    if len(empty):
        raise DataError(f"k-means left cluster {int(empty[0])} empty ({len(empty)} empty of {k}): the data has "
                        f"fewer distinct points than clusters; lower --k or add data")
    sums = np.zeros((k, x.shape[1]), np.float64)
    np.add.at(sums, labels, x)
    return (sums / sizes[:, None]).astype(np.float32), sizes


def cluster_features(x: np.ndarray, config: KMeansConfig) -> Clustering:
    """Cluster rows of x (N, D) per ``config``; DataError for too few samples or an empty cluster."""
    if x.ndim != 2 or not np.isfinite(x).all():
        raise DataError(f"features must be a finite 2-D array (N, D); got shape {x.shape}")
    first = config.fine or config.k
    if first > len(x):
        raise DataError(f"asked for {first} clusters but there are only {len(x)} samples; lower --k/--levels")
    labels, _ = nearest_centroid(x, _kmeans(x, first, config))
    if config.fine:
        fine_centroids, fine_sizes = _member_means(x, labels, config.fine)
        coarse = _kmeans(fine_centroids, config.k, config, fine_sizes.astype(np.float32))
        fine_to_coarse, _ = nearest_centroid(fine_centroids, coarse)  # (fine,)
        labels = fine_to_coarse[labels]
    centroids, sizes = _member_means(x, labels, config.k)
    return Clustering(labels, centroids, sizes, config.levels)
