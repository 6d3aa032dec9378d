"""Streaming feature extraction into shards, resumable after a kill.

Samples are cut into consecutive shards of ``shard_size`` in the reader's fixed order; shard i is
``features/shard-{i:05d}.safetensors`` holding tensor ``features`` (n, D) float32 and metadata
``{"keys": json list, "feature_extractor": id, "feature_dim": D}``. Each shard is written atomically,
so after a kill every shard on disk is whole; a rerun skips shards that already exist (their images
are not even decoded) and ``index.json`` is written last, once every shard is done. Only one shard's
encoded images are ever held in memory.

Under ``torchrun`` (``dist`` from ``hddm_p2p.train.distributed.init_distributed``) rank r writes the shards
i ≡ r (mod world) and skips the others without decoding them; after a barrier rank 0 checks that every
shard exists and writes ``index.json``. The merged result is the one-process result: the same shards
(same samples, same extractor batches) in the same order.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from safetensors import safe_open
from safetensors.torch import save_file

from hddm_p2p.cluster._reader import Sample
from hddm_p2p.cluster.features import FeatureExtractor
from hddm_p2p.errors import DataError, ShapeError
from hddm_p2p.train.distributed import Dist


@dataclass(frozen=True)
class FeatureSet:
    """Features of a whole dataset: ``keys[i]`` owns row i of ``features`` (N, D) float32."""

    keys: list[str]
    features: np.ndarray
    extractor_id: str

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])


def _atomic_save(tensors: dict, meta: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def _chunks(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    it = iter(samples)
    while chunk := list(islice(it, size)):
        yield chunk


def _shard_done(path: Path, keys: list[str], extractor_id: str) -> bool:
    """A finished shard of the same samples and extractor; DataError if the data changed under it."""
    if not path.exists():
        return False
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("feature_extractor") != extractor_id or json.loads(meta.get("keys", "[]")) != keys:
        raise DataError(f"{path} was written for other samples or another extractor; "
                        f"delete {path.parent} to extract again")
    return True


def _embed(chunk: list[Sample], extractor: FeatureExtractor, batch_size: int) -> np.ndarray:
    rows = [extractor([s.image() for s in chunk[i:i + batch_size]]) for i in range(0, len(chunk), batch_size)]
    feats = np.concatenate(rows).astype(np.float32)  # (n, D)
    if feats.shape[1] != extractor.dim:
        raise ShapeError(f"extractor {extractor.id} returned width {feats.shape[1]}, declared {extractor.dim}")
    return feats


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=True, console=Console(stderr=True))  # stdout stays for --json


def extract_features(samples: Iterable[Sample], extractor: FeatureExtractor, out_dir: str | Path, *,
                     shard_size: int = 1024, batch_size: int = 64, max_new_shards: int | None = None,
                     progress: bool = True, dist: Dist = Dist()) -> bool:
    """Write feature shards of ``samples`` under ``out_dir``; True when complete (``index.json`` written).

    ``max_new_shards`` stops after writing that many new shards (what a kill leaves behind).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names, written, count = [], 0, 0
    with _progress() as bar:
        task = bar.add_task(f"features ({extractor.id})", total=None, visible=progress)
        for i, chunk in enumerate(_chunks(samples, shard_size)):
            path, keys = out / f"shard-{i:05d}.safetensors", [s.key for s in chunk]
            if i % dist.world == dist.rank and not _shard_done(path, keys, extractor.id):
                if max_new_shards is not None and written >= max_new_shards:
                    return False
                feats = torch.from_numpy(_embed(chunk, extractor, batch_size))
                _atomic_save({"features": feats}, {"keys": json.dumps(keys), "feature_extractor": extractor.id,
                                                   "feature_dim": str(extractor.dim)}, path)
                written += 1
            names.append(path.name)
            count += len(chunk)
            bar.update(task, advance=len(chunk))
    dist.barrier()  # every rank's shards are on disk
    if dist.main:
        _write_index(out, names, count, extractor)
    dist.barrier()  # no rank returns before index.json exists
    return True


def _write_index(out: Path, names: list[str], count: int, extractor: FeatureExtractor) -> None:
    if missing := [n for n in names if not (out / n).exists()]:
        raise DataError(f"{len(missing)} feature shards are missing ({missing[0]}...); rerun to resume")
    index = {"feature_extractor": extractor.id, "feature_dim": extractor.dim, "count": count, "shards": names}
    tmp = out / "index.json.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, out / "index.json")


def _read_shard(path: Path) -> tuple[list[str], np.ndarray, str]:
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        feats = f.get_tensor("features").float().numpy()
    return json.loads(meta.get("keys", "[]")), feats, meta.get("feature_extractor", "unknown")


def load_features(path: str | Path) -> FeatureSet:
    """Features from a finished extraction dir, one safetensors shard, or an ``.npz`` (arrays keys, features)."""
    p = Path(path)
    if p.is_dir():
        if not (p / "index.json").exists():
            raise DataError(f"{p} has no index.json: the extraction did not finish; rerun it to resume")
        index = json.loads((p / "index.json").read_text())
        parts = [_read_shard(p / n) for n in index["shards"]]
        return FeatureSet([k for ks, _, _ in parts for k in ks], np.concatenate([f for _, f, _ in parts]),
                          index["feature_extractor"])
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            if "keys" not in z or "features" not in z:
                raise DataError(f"{p} must hold arrays 'keys' and 'features'")
            feats = z["features"].astype(np.float32)
            ex = str(z["feature_extractor"]) if "feature_extractor" in z else f"file:{p.name}"
            return FeatureSet([str(k) for k in z["keys"]], feats, ex)
    if p.suffix == ".safetensors" and p.exists():
        keys, feats, ex = _read_shard(p)
        return FeatureSet(keys, feats, ex)
    raise DataError(f"{p} is not a features directory, .safetensors shard or .npz file")
