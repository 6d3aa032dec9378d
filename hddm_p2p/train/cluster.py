"""Restrict training to one cluster of the clustering step's output.

Agreed layout (``hddm data cluster``): ``DIR/assignments.json`` maps sample key → cluster id (a CSV of
``key,cluster`` rows is accepted too); ``DIR/centroids.safetensors`` (required: the manifest carries the
centroid) holds ``centroids`` (K, D) with metadata ``{"feature_extractor": id, "feature_dim": D}``. The
expert's ``cluster`` description records the id, extractor, centroid, size and the assignments' sha256.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from hddm_p2p.errors import DataError


def read_assignments(path: Path) -> dict[str, int]:
    """{key: cluster id} from a JSON object or a two-column CSV (an optional header row is skipped)."""
    if not path.exists():
        raise DataError(f"assignments file {path} does not exist; run the clustering step first")
    text = path.read_text()
    try:
        if path.suffix == ".csv":
            rows = [r for r in csv.reader(text.splitlines()) if r]
            if rows and not rows[0][1].strip().lstrip("-").isdigit():
                rows = rows[1:]
            return {r[0]: int(r[1]) for r in rows}
        return {str(k): int(v) for k, v in json.loads(text).items()}
    except (ValueError, IndexError, AttributeError) as e:
        raise DataError(f"cannot read assignments {path}: {e}; expected {{\"key\": cluster_id}} JSON or key,cluster CSV") from None


def read_cluster(assignments: Path, cluster_id: int) -> tuple[frozenset[str], dict]:
    """(keys of the cluster, ``cluster`` description for expert.json)."""
    table = read_assignments(assignments)
    keys = frozenset(k for k, c in table.items() if c == cluster_id)
    if not keys:
        found = sorted(set(table.values()))
        raise DataError(f"cluster {cluster_id} has no samples in {assignments}; ids present: {found[:20]}")
    centroids = assignments.parent / "centroids.safetensors"
    if not centroids.exists():
        raise DataError(f"{centroids} is missing; the expert's cluster description needs the centroid "
                        "(keep assignments.json beside the clustering output's centroids.safetensors)")
    desc = {"id": cluster_id, **_centroid(centroids, cluster_id), "size": len(keys),
            "assignments_sha256": hashlib.sha256(assignments.read_bytes()).hexdigest()}
    return keys, desc


def _centroid(path: Path, cluster_id: int) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta, c = f.metadata() or {}, f.get_tensor("centroids")
    if not 0 <= cluster_id < c.shape[0]:
        raise DataError(f"cluster {cluster_id} is out of range for {path} ({c.shape[0]} centroids)")
    if not meta.get("feature_extractor"):
        raise DataError(f"{path} has no feature_extractor metadata; re-run the clustering step")
    return {"feature_extractor": meta["feature_extractor"], "feature_dim": int(meta.get("feature_dim", c.shape[1])),
            "centroid": [float(v) for v in c[cluster_id].float()]}
