"""Decode webdataset shards into memory in parallel, one process per shard.

    shard files ─► (forked process per shard) raw_samples (webdataset) ─► decode_sample (PIL)
                ─► uint8 (n, 3, R, R) per shard ─► concatenated in shard order

Each shard is read by the project's own reader and decoder (``hddm_p2p.train.data.raw_samples`` and
``decode_sample``), so the images, labels, captions, keys and skip count equal
``hddm_p2p.train.data.load_in_memory``'s (tests/experiments/test_shards.py); only the shards are spread
over processes. CIFAR-10's 60,000 JPEGs took ~20 s in one process on the H200
machine's CPU; six shards in six processes take the time of one. Children touch no OpenMP and no accelerator (safe to fork after CUDA is initialised).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from hddm_p2p.errors import DataError
from hddm_p2p.train.data import Filter, InMemoryData, decode_sample, load_in_memory, raw_samples, resolve_source


def read_shard(path: str, resolution: int, limit: int | None) -> tuple[bytes, list[int], list[str], list[str], list[int]]:
    """(uint8 pixels of the first ``limit`` usable images as bytes, labels, captions, keys, skips): skips[i]
    counts the unusable samples before image i, the last entry those after the last image read."""
    pixels, labels, captions, keys, skips = [], [], [], [], [0]
    for raw in raw_samples([path]):
        decoded = decode_sample(raw, resolution)
        if decoded is None:
            skips[-1] += 1
            continue
        img, label, caption = decoded
        pixels.append(img.contiguous().numpy().tobytes())  # (3, R, R) uint8; too small for a parallel kernel
        labels.append(label), captions.append(caption), keys.append(raw["__key__"]), skips.append(0)
        if limit is not None and len(keys) >= limit:
            break
    return b"".join(pixels), labels, captions, keys, skips


def _context():
    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None


def load_shard_sets(sets: list[tuple[str, int | None]], resolution: int) -> list[InMemoryData]:
    """One ``InMemoryData`` per (source, limit); every shard of every webdataset source decoded in parallel."""
    resolved = [resolve_source(src) for src, _ in sets]
    jobs = [(f, limit) for (kind, files), (_, limit) in zip(resolved, sets) if kind == "shards" for f in files]
    ctx, parts = _context(), {}
    if ctx is not None and len(jobs) > 1:
        with warnings.catch_warnings():  # fork with threads alive: the children use neither them nor their locks
            warnings.simplefilter("ignore", DeprecationWarning)
            with ProcessPoolExecutor(min(len(jobs), os.cpu_count() or 1), mp_context=ctx) as ex:
                parts = dict(zip(jobs, ex.map(read_shard, [f for f, _ in jobs], [resolution] * len(jobs),
                                              [lim for _, lim in jobs])))
    out = []
    for (kind, files), (src, limit) in zip(resolved, sets):
        if kind != "shards":  # image folders and latents: the project's loader
            out.append(load_in_memory(src, resolution, Filter(limit=limit)))
            continue
        shards = [parts.get((f, limit)) or read_shard(f, resolution, limit) for f in files]
        out.append(_join(shards, ",".join(files), resolution, limit))
    return out


def _join(shards: list[tuple], source: str, resolution: int, limit: int | None) -> InMemoryData:
    """Shards' parts in order, cut at ``limit`` images; unusable samples are counted up to the cut, as
    ``load_in_memory`` counts them."""
    blobs, labels, captions, keys, skipped = [], [], [], [], 0
    for blob, lab, cap, key, skips in shards:
        take = len(key) if limit is None else min(len(key), limit - len(keys))
        done = limit is not None and len(keys) + take >= limit  # the loader stops at the limit-th image
        skipped += sum(skips[:take]) + (0 if done else skips[take])
        blobs.append(blob[: take * 3 * resolution * resolution])
        labels, captions, keys = labels + lab[:take], captions + cap[:take], keys + key[:take]
        if limit is not None and len(keys) >= limit:
            break
    if not keys:
        raise DataError(f"no usable samples in {source} ({skipped} skipped); check the path")
    x = torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8).view(len(keys), 3, resolution, resolution)
    x = x.clone()  # torch-owned storage: it can move to shared memory for the training workers
    return InMemoryData(x, torch.tensor(labels, dtype=torch.long), captions, keys, "pixel", source, skipped)


def load_shards(source: str | Path, resolution: int = 32, limit: int | None = None) -> InMemoryData:
    """``load_in_memory(source, resolution, Filter(limit=limit))``, decoded in parallel."""
    return load_shard_sets([(str(source), limit)], resolution)[0]
