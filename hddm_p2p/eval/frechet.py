"""The Fréchet distance between two feature distributions, each summarised by a Gaussian (μ, Σ).

    FD = ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2})        (Heusel et al. 2017, eq. 6)

Statistics are accumulated streaming in float64 (features arrive in batches; nothing of size N is
kept), then stored with the id of the extractor that produced them. Comparing statistics from two
different extractors is an error, as is estimating a covariance from fewer than two samples. The
trace term uses torch-fidelity's eigenvalue form: tr((Σ_a Σ_b)^{1/2}) = Σ_i √λ_i(Σ_a Σ_b).
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from rich.progress import Progress
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

from hddm_p2p.errors import CompatibilityError, DataError, ShapeError
from hddm_p2p.eval.extractors import FeatureExtractor
from hddm_p2p.p2p._files import atomic_write

MIN_SAMPLES = 2  # an unbiased covariance needs N ≥ 2


@dataclass(frozen=True, eq=False)
class Stats:
    """Mean ``mu`` (D,) and covariance ``sigma`` (D, D), float64, of ``n`` feature vectors from ``extractor``.

    Invariant: ``load_stats(p) `` after ``save_stats(s, p)`` has the same arrays, ``n``, ``extractor``, ``info``.
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    extractor: str
    info: dict[str, Any] = field(default_factory=dict)  # extractor info (test accuracy) + provenance (source)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


class StatsAccumulator:
    """Streaming float64 mean/covariance: Σ = (Σ_i (x_i−c)(x_i−c)ᵀ − n (μ−c)(μ−c)ᵀ) / (n−1), c = first batch's mean.

    The shift ``c`` keeps the sums small, so features with a large common offset lose no precision.
    """

    def __init__(self) -> None:
        self.n = 0
        self._shift: np.ndarray | None = None
        self._sum: np.ndarray | None = None  # (D,)   Σ (x − c)
        self._outer: np.ndarray | None = None  # (D, D) Σ (x − c)(x − c)ᵀ

    def update(self, feats: torch.Tensor | np.ndarray) -> None:
        x = np.asarray(feats.detach().cpu() if isinstance(feats, torch.Tensor) else feats, dtype=np.float64)
        if x.ndim != 2:
            raise ShapeError(f"features must be (N, D), got shape {tuple(x.shape)}")
        if self._shift is None:
            d = x.shape[1]
            self._shift, self._sum, self._outer = x.mean(0), np.zeros(d), np.zeros((d, d))
        elif x.shape[1] != self._shift.shape[0]:
            raise ShapeError(f"feature dim changed from {self._shift.shape[0]} to {x.shape[1]} between batches")
        xc = x - self._shift
        self._sum += xc.sum(0)
        self._outer += xc.T @ xc
        self.n += x.shape[0]

    def stats(self, extractor: str, info: dict[str, Any] | None = None) -> Stats:
        if self.n < MIN_SAMPLES:
            raise DataError(f"a Fréchet distance needs at least {MIN_SAMPLES} images per set, got {self.n}; "
                            "generate or pass more images")
        m = self._sum / self.n  # mean of (x − c)
        sigma = (self._outer - self.n * np.outer(m, m)) / (self.n - 1)
        return Stats(m + self._shift, (sigma + sigma.T) / 2, self.n, extractor, dict(info or {}))


def compute_stats(extractor: FeatureExtractor, images: Iterable[torch.Tensor], *, total: int | None = None,
                  progress: bool = True, info: dict[str, Any] | None = None) -> Stats:
    """Statistics of ``extractor`` features over batches of uint8 images ``(B, 3, H, W)``."""
    acc = StatsAccumulator()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"features ({extractor.id})", total=total)
        for batch in images:
            with torch.inference_mode():
                acc.update(extractor(batch))
            bar.advance(task, batch.shape[0])
    return acc.stats(extractor.id, {**getattr(extractor, "info", {}), **(info or {})})


def sample_size_warnings(stats: Stats, name: str) -> list[str]:
    """Warn when N < 2·D: the covariance estimate is rank-deficient and FD is biased upwards."""
    if stats.n < 2 * stats.dim:
        return [f"{name}: {stats.n} images for {stats.dim}-d features (< 2×{stats.dim} = {2 * stats.dim}); "
                "the distance is biased upwards, compare it only with numbers from the same N"]
    return []


def check_compatible(a: Stats, b: Stats) -> None:
    """CompatibilityError unless ``a`` and ``b`` come from the same extractor (same id, same dim)."""
    if a.extractor != b.extractor:
        raise CompatibilityError(f"statistics come from different feature extractors: {a.extractor!r} vs "
                                 f"{b.extractor!r}; recompute the reference with the same --extractor")
    if a.dim != b.dim:
        raise ShapeError(f"feature dims differ ({a.dim} vs {b.dim}) under the same extractor id {a.extractor!r}")


def frechet_distance_from_stats(a: Stats, b: Stats) -> float:
    """FD between two Gaussians (see the module docstring); both from the same extractor."""
    check_compatible(a, b)
    for s, name in ((a, "first"), (b, "second")):
        if s.n < MIN_SAMPLES:
            raise DataError(f"the {name} set has {s.n} images; a Fréchet distance needs at least {MIN_SAMPLES}")
    fd = fid_statistics_to_metric({"mu": a.mu, "sigma": a.sigma}, {"mu": b.mu, "sigma": b.sigma}, verbose=False)
    return max(float(fd[KEY_METRIC_FID]), 0.0)  # tiny negatives are eigenvalue round-off of a zero distance


def frechet_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray) -> float:
    """FD between two feature sets ``(N_a, D)`` and ``(N_b, D)``; warns when N < 2·D."""
    sa, sb = StatsAccumulator(), StatsAccumulator()
    sa.update(feats_a)
    sb.update(feats_b)
    a, b = sa.stats("features"), sb.stats("features")
    for w in sample_size_warnings(a, "first set") + sample_size_warnings(b, "second set"):
        warnings.warn(w, stacklevel=2)
    return frechet_distance_from_stats(a, b)


def save_stats(stats: Stats, path: Path) -> None:
    """Write ``stats`` to an ``.npz`` atomically; the extractor id and info travel in a JSON member."""
    meta = json.dumps({"format": "hddm-fd-stats/1", "n": stats.n, "extractor": stats.extractor, "info": stats.info})
    buf = io.BytesIO()
    np.savez(buf, mu=stats.mu, sigma=stats.sigma, meta=np.array(meta))
    atomic_write(Path(path), buf.getvalue())


def load_stats(path: Path) -> Stats:
    """Read statistics written by :func:`save_stats`; DataError if the file is not one."""
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            mu, sigma = z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
    except FileNotFoundError:
        raise DataError(f"statistics file {str(path)!r} does not exist; create it with `hddm eval stats`") from None
    except (KeyError, ValueError, OSError) as e:
        raise DataError(f"{str(path)!r} is not an hddm statistics file ({e}); recreate it with `hddm eval stats`") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ShapeError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
    return Stats(mu, sigma, int(meta["n"]), str(meta["extractor"]), dict(meta.get("info") or {}))
