"""A small streaming reader of image datasets for clustering: webdataset shards or image folders.

Yields ``Sample(key, data, label)`` in a fixed order (shards sorted by name, members in tar order;
folder files sorted by path) with the image still encoded, so callers that skip work (a resumed
extraction) never pay for decoding. ``Sample.image()`` decodes to an RGB ``PIL.Image``.
"""

from __future__ import annotations

import glob
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import Image

from hddm_p2p.errors import DataError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp")
_SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")


@dataclass(frozen=True)
class Sample:
    key: str
    data: bytes  # the encoded image file
    label: int | None = None

    def image(self) -> Image.Image:
        """Decode to RGB; a corrupt file is a DataError naming the sample."""
        try:
            return Image.open(io.BytesIO(self.data)).convert("RGB")
        except Exception as e:  # PIL raises many types for bad bytes
            raise DataError(f"sample {self.key!r} is not a readable image ({e}); remove it or fix the dataset") from None


def _is_shard(path: str) -> bool:
    return path.endswith(_SHARD_SUFFIXES)


def resolve(spec: str | Path) -> tuple[str, list[str]]:
    """('shards' | 'folder', paths) for a shard file, a glob of shards, or a directory."""
    spec = str(spec)
    if any(c in spec for c in "*?["):
        paths = sorted(p for p in glob.glob(spec) if _is_shard(p))
        if not paths:
            raise DataError(f"no webdataset shards (.tar, .tar.gz) match {spec!r}; check the pattern")
        return "shards", paths
    p = Path(spec)
    if not p.exists():
        raise DataError(f"data path {spec!r} does not exist")
    if p.is_file():
        if not _is_shard(spec):
            raise DataError(f"{spec!r} is not a webdataset shard (.tar or .tar.gz) or a directory of images")
        return "shards", [spec]
    shards = sorted(str(q) for q in p.iterdir() if _is_shard(str(q)))
    if shards:
        return "shards", shards
    files = sorted(str(q) for q in p.rglob("*") if q.suffix.lower().lstrip(".") in IMAGE_EXTS)
    return "folder", files


def _from_shards(paths: list[str]) -> Iterator[Sample]:
    import webdataset as wds

    for sample in wds.WebDataset(paths, shardshuffle=False, empty_check=False):
        ext = next((e for e in IMAGE_EXTS if e in sample), None)
        if ext is None:
            continue
        cls = sample.get("cls")
        yield Sample(sample["__key__"], sample[ext], int(cls) if cls is not None else None)


def _from_folder(root: Path, files: list[str]) -> Iterator[Sample]:
    for f in files:
        rel = Path(f).relative_to(root)
        yield Sample(str(rel.with_suffix("")), Path(f).read_bytes(), None)


def iter_samples(spec: str | Path, limit: int | None = None) -> Iterator[Sample]:
    """Stream samples of ``spec`` in a deterministic order; DataError if it holds no images."""
    kind, paths = resolve(spec)
    it = _from_shards(paths) if kind == "shards" else _from_folder(Path(spec), paths)
    n = 0
    for sample in it:
        if limit is not None and n >= limit:
            return
        n += 1
        yield sample
    if n == 0:
        raise DataError(f"no images found in {str(spec)!r} (looked for {', '.join(IMAGE_EXTS)} files or shard members)")
