"""Image sources: tensors, PNG directories, real CIFAR shards and aliases, groupings."""

from pathlib import Path

import pytest
import torch

from hddm_p2p.errors import DataError, ShapeError
from hddm_p2p.eval.images import iter_batches, load_all, load_groups, resolve_source, save_png, to_uint8


def _pngs(d: Path, n: int, size: int = 8, sub: str = "") -> torch.Tensor:
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
    for i, img in enumerate(x):
        save_png(img, d / sub / f"{i:06d}.png")
    return x


def test_png_directory_round_trips_exactly(tmp_path):
    x = _pngs(tmp_path, 5)
    assert [b.shape[0] for b in iter_batches(tmp_path, 2)] == [2, 2, 1]
    assert torch.equal(load_all(tmp_path), x)
    assert not list(tmp_path.glob(".*tmp"))


def test_real_cifar_shards_through_the_alias(cifar):
    batches = list(iter_batches("cifar10-test", 16, limit=40))
    assert [b.shape for b in batches] == [(16, 3, 32, 32)] * 2 + [(8, 3, 32, 32)]
    groups = load_groups(cifar / "test-0000.tar.gz", "label", per_group=3, limit=200)
    assert sorted(groups) == [str(k) for k in range(10)] and all(g.shape[0] == 3 for g in groups.values())


def test_alias_without_shards_and_mixed_sizes_are_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HDDM_DATA", str(tmp_path))
    with pytest.raises(DataError, match="set HDDM_DATA"):
        resolve_source("cifar10-test")
    _pngs(tmp_path / "mixed", 2, 8)
    save_png(torch.zeros(3, 4, 4, dtype=torch.uint8), tmp_path / "mixed" / "000009.png")
    with pytest.raises(ShapeError, match="different sizes"):
        load_all(tmp_path / "mixed")
    with pytest.raises(ShapeError, match="uint8 \\(N, 3, H, W\\)"):
        next(iter_batches(torch.zeros(2, 3, 4, 4)))


def test_groupings(tmp_path):
    _pngs(tmp_path / "g", 3, sub="cat")
    _pngs(tmp_path / "g", 4, sub="dog")
    g = load_groups(tmp_path / "g", "subdirs")
    assert {k: v.shape[0] for k, v in g.items()} == {"cat": 3, "dog": 4}
    x = _pngs(tmp_path / "flat", 6)
    chunks = load_groups(tmp_path / "flat", "chunk:3")
    assert list(chunks) == ["0", "1"] and torch.equal(chunks["1"], x[3:])
    with pytest.raises(DataError, match="do not split into groups of 4"):
        load_groups(tmp_path / "flat", "chunk:4")
    with pytest.raises(DataError, match="unknown grouping 'prompt'"):
        load_groups(tmp_path / "flat", "prompt")


def test_float_images_map_to_uint8():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    assert to_uint8(x)[0, 0].flatten().tolist() == [0, 128, 255, 255]
