"""Streaming images for clustering, on top of ``hddm_p2p.train.data`` (same sources, same sample keys).

Yields ``Sample(key, data, label)`` in a fixed order (shards sorted by name, members in tar order;
folder files sorted by path) with the image still encoded, so callers that skip work (a resumed
extraction) never pay for decoding. ``Sample.image()`` decodes to an RGB ``PIL.Image``. Keys match
the training reader's, so ``assignments.json`` can filter training data directly.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import Image

from hddm_p2p.errors import DataError
from hddm_p2p.train.data import IMAGE_EXTS, raw_samples, resolve_source


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


def resolve(spec: str | Path) -> tuple[str, list[str]]:
    """('shards', files) or ('folder', image files) for a shard, a glob of shards or a directory."""
    kind, files = resolve_source(spec)
    if kind == "latents":
        raise DataError(f"{spec} holds latent shards; cluster the images they came from instead")
    if kind == "folder":
        root = Path(files[0])
        files = sorted(str(p) for p in root.rglob("*") if p.suffix.lower().lstrip(".") in IMAGE_EXTS)
    return kind, files


def _from_shards(paths: list[str]) -> Iterator[Sample]:
    for sample in raw_samples(paths):
        ext = next((e for e in IMAGE_EXTS if e in sample), None)
        if ext is not None:
            cls = sample.get("cls")
            yield Sample(sample["__key__"], sample[ext], int(cls) if cls is not None else None)


def _from_folder(root: Path, files: list[str]) -> Iterator[Sample]:
    for f in files:
        yield Sample(str(Path(f).relative_to(root).with_suffix("")), Path(f).read_bytes(), None)


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
