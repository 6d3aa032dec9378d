"""Contact sheets: one PNG per cluster showing its most central members, so a person can see what it holds."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw

from hddm_p2p.cluster._io import write_bytes_atomic
from hddm_p2p.cluster._reader import Sample


def central_members(features: np.ndarray, labels: np.ndarray, centroids: np.ndarray, per_cluster: int) -> list[list[int]]:
    """For each cluster k, indices of up to ``per_cluster`` members nearest to centroid k, nearest first."""
    d2 = ((features - centroids[labels]) ** 2).sum(1)  # (N,) distance to own centroid
    out = []
    for k in range(len(centroids)):
        idx = np.flatnonzero(labels == k)
        out.append(idx[np.argsort(d2[idx], kind="stable")[:per_cluster]].tolist())
    return out


def _sheet(images: list[Image.Image], title: str, thumb: int, cols: int) -> Image.Image:
    rows = max(1, -(-len(images) // cols))
    header = 18
    sheet = Image.new("RGB", (cols * thumb, rows * thumb + header), "white")
    ImageDraw.Draw(sheet).text((4, 3), title, fill="black")
    for i, im in enumerate(images):
        sheet.paste(im.resize((thumb, thumb), Image.NEAREST if im.width < thumb else Image.BICUBIC),
                    ((i % cols) * thumb, header + (i // cols) * thumb))
    return sheet


def write_contact_sheets(samples: Iterable[Sample], members: list[list[str]], sizes: list[int], out_dir: Path,
                         thumb: int = 64, cols: int = 8) -> list[Path]:
    """Write ``out_dir/cluster_XX.png`` for every cluster; ``members[k]`` are the keys to show for cluster k.

    Streams ``samples`` once, keeping only the wanted images, and stops as soon as all are found.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = {key: k for k, keys in enumerate(members) for key in keys}
    found: dict[str, Image.Image] = {}
    for s in samples:
        if s.key in wanted:
            found[s.key] = s.image()
            if len(found) == len(wanted):
                break
    width = max(2, len(str(len(members) - 1)))
    paths = []
    for k, keys in enumerate(members):
        images = [found[key] for key in keys if key in found]
        title = f"cluster {k} - {sizes[k]} images ({len(images)} most central shown)"
        buf = io.BytesIO()
        _sheet(images, title, thumb, cols).save(buf, format="PNG")
        path = out_dir / f"cluster_{k:0{width}d}.png"
        write_bytes_atomic(path, buf.getvalue())
        paths.append(path)
    return paths
