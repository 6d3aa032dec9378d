"""``hddm data encode``: precompute VAE latents once (as fast-DiT does), so training never runs the VAE.

Output directory::

    latents-00000.safetensors   "latents" (N, C, h, w) float16, "labels" (N,) int64;
                                metadata {"keys": JSON list, "captions": JSON list}
    latents.json                {"format": "hddm-latents/1", "vae": {id, scaling_factor, image_resolution},
                                 "channels", "resolution", "count", "skipped", "shards": [...]}

Each shard is written atomically; ``latents.json`` last, so a directory with it is complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from hddm_p2p.errors import DataError
from hddm_p2p.train.distributed import Dist
from hddm_p2p.train.data import Filter, InMemoryData, Kept, atomic_write_bytes, iter_samples, resolve_source
from hddm_p2p.train.vae import encode, get_vae, vae_description

FORMAT = "hddm-latents/1"


def _write_shard(path: Path, latents: list, labels: list, keys: list, captions: list) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file({"latents": torch.cat(latents).half().contiguous(), "labels": torch.tensor(labels, dtype=torch.long)},
              str(tmp), metadata={"keys": json.dumps(keys), "captions": json.dumps(captions)})
    os.replace(tmp, path)


class _Shards:
    """Buffers rows into shards of ``shard_size``; encodes and writes only the shards this rank owns
    (shard i belongs to rank i mod world), while every rank keeps the same count of all shards."""

    def __init__(self, out: Path, vae, batch_size: int, shard_size: int, dist: Dist):
        self.out, self.vae, self.batch_size, self.shard_size, self.dist = out, vae, batch_size, shard_size, dist
        self.names: list[str] = []
        self.rows = 0  # rows of the current shard, owned or not
        self.buf, self.batch = ([], [], [], []), ([], [], [], [])

    @property
    def mine(self) -> bool:
        return len(self.names) % self.dist.world == self.dist.rank

    def add(self, img, label, key, caption) -> None:
        self.rows += 1
        if self.mine:
            for b, v in zip(self.batch, (img, label, key, caption)):
                b.append(v)
            if len(self.batch[0]) == self.batch_size:
                self._flush_batch()
        if self.rows >= self.shard_size:
            self.flush()

    def _flush_batch(self) -> None:
        if self.batch[0]:
            self.buf[0].append(encode(self.vae, torch.stack(self.batch[0]).float() / 127.5 - 1).cpu())
            for b, v in zip(self.buf[1:], self.batch[1:]):
                b.extend(v)
            for b in self.batch:
                b.clear()

    def flush(self) -> None:
        """Close the current shard (written if this rank owns it)."""
        if not self.rows:
            return
        name = f"latents-{len(self.names):05d}.safetensors"
        if self.mine:
            self._flush_batch()
            _write_shard(self.out / name, *self.buf)
            for b in self.buf:
                b.clear()
        self.names.append(name)
        self.rows = 0


def encode_dataset(source: str, out: Path, vae_name: str, image_resolution: int = 256, batch_size: int = 32,
                   shard_size: int = 10_000, device: str = "cpu", flt: Filter = Filter(),
                   progress: Callable[[int], None] | None = None, dist: Dist = Dist()) -> Path:
    """Encode every readable image of ``source`` to latents under ``out``; returns ``out``.

    Under ``torchrun`` (``dist`` from ``init_distributed``) every rank reads the same stream, rank r encodes
    and writes shards i ≡ r (mod world), and rank 0 writes ``latents.json`` after a barrier: the directory
    is the one a single process writes (latents equal up to float rounding of batched convolutions).
    """
    kind, files = resolve_source(source)
    if kind == "latents":
        raise DataError(f"{source} already holds latents")
    out.mkdir(parents=True, exist_ok=True)
    shards, count = _Shards(out, get_vae(vae_name, device), batch_size, shard_size, dist), 0
    kept = Kept(iter_samples(kind, files, image_resolution), flt, progress)
    for key, img, label, caption in kept:
        shards.add(img, label, key, caption)
        count += 1
    shards.flush()
    skipped = kept.skipped
    if count == 0:
        raise DataError(f"no usable images in {source} ({skipped} skipped)")
    dist.barrier()  # every rank's shards are on disk
    if dist.main:
        first = safe_open(str(out / shards.names[0]), framework="pt").get_slice("latents").get_shape()
        index = {"format": FORMAT, "vae": vae_description(vae_name, shards.vae, image_resolution),
                 "channels": first[1], "resolution": first[2], "count": count, "skipped": skipped,
                 "shards": shards.names, "source": source}
        atomic_write_bytes(out / "latents.json", (json.dumps(index, indent=2) + "\n").encode())
    dist.barrier()  # no rank returns before latents.json exists
    return out


def read_latent_shards(root: Path, flt: Filter = Filter()) -> InMemoryData:
    """All latents of a directory written by ``encode_dataset``, filtered, as ``InMemoryData``."""
    index = json.loads((root / "latents.json").read_text())
    if index.get("format") != FORMAT:
        raise DataError(f"{root}/latents.json has format {index.get('format')!r}, expected {FORMAT}")
    xs, labels, keys, caps = [], [], [], []
    for name in index["shards"]:
        with safe_open(str(root / name), framework="pt") as f:
            meta, lat, lab = f.metadata(), f.get_tensor("latents"), f.get_tensor("labels")
        k, c = json.loads(meta["keys"]), json.loads(meta["captions"])
        keep = [i for i in range(len(k)) if flt.keep(k[i], int(lab[i]))]
        idx = torch.tensor(keep, dtype=torch.long)
        xs.append(lat.index_select(0, idx)), labels.append(lab.index_select(0, idx))
        keys += [k[i] for i in keep]
        caps += [c[i] for i in keep]
    x, y = torch.cat(xs), torch.cat(labels)
    if flt.limit is not None:
        x, y, keys, caps = x[:flt.limit], y[:flt.limit], keys[:flt.limit], caps[:flt.limit]
    data = InMemoryData(x, y, caps, keys, "latent", str(root), int(index.get("skipped", 0)))
    data.meta["vae"] = index["vae"]
    return data
