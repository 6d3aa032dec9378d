"""Writing samples: one PNG per sample and a grid, from tensors in the data's value range."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image


def to_uint8(x: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """(B, C, H, W) floats in ``value_range`` → uint8 (B, C, H, W)."""
    lo, hi = value_range
    x = (x.float().cpu() - lo) / (hi - lo)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _pil(img: torch.Tensor) -> Image.Image:
    arr = img.permute(1, 2, 0).numpy()  # (H, W, C)
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)


def save_samples(images: torch.Tensor, out_dir: Path, start: int = 0) -> list[Path]:
    """Write uint8 (B, C, H, W) as ``out_dir/000000.png`` …; each file appears atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        path = out_dir / f"{start + i:06d}.png"
        tmp = path.with_name(f".{path.name}.tmp")
        _pil(img).save(tmp, format="PNG")
        tmp.replace(path)
        paths.append(path)
    return paths


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None, scale: int = 1) -> Path:
    """A grid PNG of uint8 (B, C, H, W), upscaled by ``scale`` with nearest neighbours (tiny images stay crisp)."""
    from torchvision.utils import make_grid

    nrow = nrow or max(1, math.ceil(math.sqrt(len(images))))
    grid = make_grid(images, nrow=nrow, padding=1, pad_value=255)  # uint8 (C, H', W')
    img = _pil(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="PNG")
    tmp.replace(path)
    return path
