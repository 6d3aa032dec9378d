"""The demo's dataset: scikit-learn's bundled 8×8 handwritten digits (1,797 images, no download).

Written once as an image folder ``root/<digit>/<index>.png`` (grey levels 0..16 scaled to 0..255), which
every part of the toolkit reads like any other folder: clustering, expert training and router training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_digits(root: Path) -> tuple[Path, int]:
    """(folder, number of images); files already there are kept (the folder is rebuilt deterministically)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)  # (N, 8, 8)
    for i, (img, label) in enumerate(zip(images, digits.target)):
        path = root / str(int(label)) / f"{i:04d}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            Image.fromarray(img, mode="L").save(tmp, format="PNG")
            tmp.replace(path)
    return root, len(images)
