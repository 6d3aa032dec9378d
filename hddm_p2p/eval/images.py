"""Image sets for evaluation: directories of PNGs, webdataset shards, dataset aliases or tensors.

Every source becomes a stream of uint8 batches ``(B, 3, H, W)`` in a fixed order (files sorted by
path, shard members in tar order), which is what every metric in ``hddm_p2p.eval`` consumes.

Aliases name the CIFAR-10 shards under ``$HDDM_DATA`` (default ``$HDDM_HOME/data``)::

    cifar10-test   $HDDM_DATA/cifar10/test-*.tar.gz   (10,000 images)
    cifar10-train  $HDDM_DATA/cifar10/train-*.tar.gz  (50,000 images)
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable, Iterator, Union

import numpy as np
import torch
from PIL import Image

from hddm_p2p.cluster._reader import iter_samples
from hddm_p2p.errors import DataError, ShapeError
from hddm_p2p.paths import hddm_home

ImageSource = Union[str, Path, torch.Tensor]
ALIASES = {"cifar10-test": "cifar10/test-*.tar.gz", "cifar10-train": "cifar10/train-*.tar.gz"}


def data_root() -> Path:
    """Where dataset aliases live: ``$HDDM_DATA``, else ``$HDDM_HOME/data``."""
    env = os.environ.get("HDDM_DATA")
    return Path(env).expanduser() if env else hddm_home() / "data"


def resolve_source(source: str | Path) -> str:
    """An alias becomes its shard glob; DataError if the alias's shards are absent."""
    if str(source) not in ALIASES:
        return str(source)
    pattern = str(data_root() / ALIASES[str(source)])
    if not glob.glob(pattern):
        raise DataError(f"dataset alias {source!r} needs shards at {pattern}; set HDDM_DATA to the directory "
                        "that holds cifar10/, or pass a directory or shard path instead")
    return pattern


def pil_to_uint8(img: Image.Image) -> torch.Tensor:
    """RGB PIL image → uint8 tensor (3, H, W)."""
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def _stack(images: list[torch.Tensor], where: str) -> torch.Tensor:
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        raise ShapeError(f"images in {where} have different sizes {sorted(shapes)}; resize them to one size first")
    return torch.stack(images)  # (B, 3, H, W)


def iter_labeled(source: str | Path, limit: int | None = None) -> Iterator[tuple[torch.Tensor, int | None]]:
    """(uint8 image (3, H, W), class label or None) for each image of ``source``, in a fixed order."""
    for sample in iter_samples(resolve_source(source), limit=limit):
        yield pil_to_uint8(sample.image()), sample.label


def iter_batches(source: ImageSource, batch_size: int = 100, limit: int | None = None) -> Iterator[torch.Tensor]:
    """uint8 batches ``(B, 3, H, W)`` of ``source``: a tensor (N,3,H,W), a directory, shard(s), or an alias."""
    if isinstance(source, torch.Tensor):
        yield from _tensor_batches(source, batch_size, limit)
        return
    buf: list[torch.Tensor] = []
    for img, _ in iter_labeled(source, limit):
        buf.append(img)
        if len(buf) == batch_size:
            yield _stack(buf, str(source))
            buf = []
    if buf:
        yield _stack(buf, str(source))


def _tensor_batches(x: torch.Tensor, batch_size: int, limit: int | None) -> Iterator[torch.Tensor]:
    if x.ndim != 4 or x.shape[1] != 3 or x.dtype != torch.uint8:
        raise ShapeError(f"an image tensor must be uint8 (N, 3, H, W), got {x.dtype} {tuple(x.shape)}")
    x = x[:limit] if limit is not None else x
    for i in range(0, x.shape[0], batch_size):
        yield x[i:i + batch_size]


def load_all(source: ImageSource, limit: int | None = None) -> torch.Tensor:
    """Every image of ``source`` as one uint8 tensor ``(N, 3, H, W)`` (for small sets)."""
    batches = list(iter_batches(source, 1000, limit))
    if not batches:
        raise DataError(f"no images in {source!r}")
    return torch.cat(batches)


def count_images(source: ImageSource, limit: int | None = None) -> int | None:
    """The number of images for a progress bar when cheap to know (tensor, directory of files), else None."""
    if isinstance(source, torch.Tensor):
        n = source.shape[0]
    elif Path(source).is_dir() and not any(Path(source).glob("*.tar*")):
        n = sum(1 for p in Path(source).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"))
    else:
        return limit
    return min(n, limit) if limit is not None else n


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] (B, 3, H, W) → uint8 [0, 255]; uint8 passes through."""
    if images.dtype == torch.uint8:
        return images
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def save_png(image: torch.Tensor, path: Path) -> None:
    """Write one uint8 image (3, H, W) as a PNG atomically (temp name + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image.permute(1, 2, 0).cpu().numpy()).save(tmp, format="PNG")
    os.replace(tmp, path)


def group_by_label(pairs: Iterable[tuple[torch.Tensor, int | None]], per_group: int) -> dict[int, torch.Tensor]:
    """Up to ``per_group`` images per class label: {label: uint8 (n, 3, H, W)}."""
    groups: dict[int, list[torch.Tensor]] = {}
    for img, label in pairs:
        if label is not None and len(groups.setdefault(label, [])) < per_group:
            groups[label].append(img)
    return {k: torch.stack(v) for k, v in sorted(groups.items())}


GROUPINGS = ("subdirs", "label", "chunk:N")


def load_groups(source: str | Path, grouping: str, per_group: int | None = None,
                limit: int | None = None) -> dict[str, torch.Tensor]:
    """Images of ``source`` split into groups (one per prompt/class): {name: uint8 (n, 3, H, W)}.

    ``subdirs``: each immediate subdirectory is a group; ``label``: the class label of each shard sample;
    ``chunk:N``: consecutive runs of N images in file order (e.g. N samples per prompt, prompt-major).
    ``limit`` reads only the first images of ``source`` (label grouping otherwise reads it all).
    """
    kind, _, arg = grouping.partition(":")
    if kind == "subdirs":
        subs = sorted(p for p in Path(source).iterdir() if p.is_dir()) if Path(source).is_dir() else []
        if not subs:
            raise DataError(f"--groups subdirs needs subdirectories of images in {str(source)!r}")
        return {p.name: load_all(p, per_group) for p in subs}
    if kind == "label":
        groups = group_by_label(iter_labeled(source, limit), per_group or 10**9)
        if not groups:
            raise DataError(f"--groups label needs class labels (.cls members) in {str(source)!r}")
        return {str(k): v for k, v in groups.items()}
    if kind == "chunk" and arg.isdigit() and int(arg) >= 2:
        x, n = load_all(source, limit), int(arg)
        if x.shape[0] % n:
            raise DataError(f"{x.shape[0]} images do not split into groups of {n}; check --groups chunk:N")
        return {str(g): x[g * n:(g + 1) * n][:per_group] for g in range(x.shape[0] // n)}
    raise DataError(f"unknown grouping {grouping!r}; use one of {', '.join(GROUPINGS)} (N ≥ 2)")
