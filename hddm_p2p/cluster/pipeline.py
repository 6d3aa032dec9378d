"""``hddm data cluster`` as one function: stream → features (sharded, resumable) → k-means → files.

Writes under ``out``: ``features/`` (shards + index.json), ``assignments.json`` (key → cluster id),
``centroids.safetensors`` ("centroids" (K, D) + extractor metadata), ``summary.json`` and
``contact_sheets/cluster_XX.png``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from hddm_p2p.cluster._io import write_json_atomic
from hddm_p2p.cluster._reader import iter_samples, resolve
from hddm_p2p.cluster.assign import save_centroids
from hddm_p2p.cluster.contact_sheet import central_members, write_contact_sheets
from hddm_p2p.cluster.extract import FeatureSet, extract_features, load_features
from hddm_p2p.cluster.features import make_extractor
from hddm_p2p.cluster.kmeans import KMeansConfig, cluster_features
from hddm_p2p.errors import DataError
from hddm_p2p.train.distributed import Dist


@dataclass(frozen=True)
class ClusterJob:
    """One clustering run. ``features`` is an extractor name or a path to precomputed features."""

    data: str
    out: Path
    k: int
    features: str = "dinov2"
    levels: str | None = None  # "FINE:COARSE" for hierarchical, None/"flat" for flat k-means
    seed: int = 0
    device: str = "cpu"
    shard_size: int = 1024  # samples per feature shard: the unit of resumption
    batch_size: int = 64
    limit: int | None = None  # use only the first N samples
    sheet_size: int = 64  # images per contact sheet


def _features(job: ClusterJob, progress: bool, max_new_shards: int | None, dist: Dist) -> FeatureSet | None:
    if Path(job.features).exists():
        return load_features(job.features)
    extractor = make_extractor(job.features, job.device)
    feat_dir = job.out / "features"
    done = extract_features(iter_samples(job.data, job.limit), extractor, feat_dir, shard_size=job.shard_size,
                            batch_size=job.batch_size, max_new_shards=max_new_shards, progress=progress,
                            dist=dist)
    return load_features(feat_dir) if done and dist.main else None


def run_clustering(job: ClusterJob, progress: bool = True, max_new_shards: int | None = None,
                   dist: Dist = Dist()) -> dict | None:
    """Run ``job``; returns the summary dict, or None if stopped early by ``max_new_shards`` (rerun resumes).

    Under ``torchrun`` (``dist`` from ``init_distributed``) the ranks extract features in alternate shards;
    rank 0 alone then clusters and writes (the other ranks return None)."""
    config = KMeansConfig.from_levels(job.levels, job.k, job.seed)  # bad flags fail before any work
    resolve(job.data)  # so does a missing data path
    job.out.mkdir(parents=True, exist_ok=True)
    fs = _features(job, progress, max_new_shards, dist)
    if fs is None:
        return None
    if len(set(fs.keys)) != len(fs.keys):
        raise DataError("sample keys are not unique; each sample needs its own key for assignments.json")
    result = cluster_features(fs.features, config)
    assignments = dict(zip(fs.keys, result.labels.tolist()))
    write_json_atomic(job.out / "assignments.json", assignments)
    save_centroids(job.out / "centroids.safetensors", result.centroids, fs.extractor_id, result.levels)
    central = central_members(fs.features, result.labels, result.centroids, job.sheet_size)
    sheets = write_contact_sheets(iter_samples(job.data, job.limit), [[fs.keys[i] for i in c] for c in central],
                                  result.sizes.tolist(), job.out / "contact_sheets")
    summary = {
        "kind": "clustering", "data": str(job.data), "count": len(fs.keys), "k": job.k, "levels": result.levels,
        "seed": job.seed, "feature_extractor": fs.extractor_id, "feature_dim": fs.dim,
        "sizes": result.sizes.tolist(),
        "assignments_sha256": hashlib.sha256((job.out / "assignments.json").read_bytes()).hexdigest(),
        "contact_sheets": [str(p.relative_to(job.out)) for p in sheets],
        "job": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(job).items()},
    }
    write_json_atomic(job.out / "summary.json", summary)
    return summary
