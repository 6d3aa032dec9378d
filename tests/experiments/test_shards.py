"""The parallel shard reader gives exactly what the project's webdataset loader gives."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from hddm_p2p.errors import DataError
from hddm_p2p.experiments.shards import load_shard_sets, load_shards
from hddm_p2p.train.data import Filter, load_in_memory, raw_samples


def _jpeg(seed: int, size: int = 40) -> bytes:
    g = torch.Generator().manual_seed(seed)
    img = Image.fromarray(torch.randint(0, 256, (size, size + 8, 3), dtype=torch.uint8, generator=g).numpy())
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def _shard(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture()
def shards(tmp_path) -> str:
    """Two shards: non-square JPEGs (cropped, resized), a corrupt image, an upper-case suffix, samples
    with no image (one only by its suffix, ``x.jpg``), ``__meta__`` members and a sample in a sub-folder."""
    _shard(tmp_path / "s-0.tar.gz", [
        ("__meta__/notes.txt", b"skipped"), ("__info__.json", b"{}"),
        ("a/000.jpg", _jpeg(0)), ("a/000.cls", b"3"), ("a/000.txt", "un chat".encode()),
        ("001.JPG", _jpeg(1)), ("001.cls", b"7"),
        ("002.jpg", b"not a jpeg"), ("002.cls", b"1"),
        ("003.cls", b"2"),
        ("004.x.jpg", _jpeg(4)), ("004.x.cls", b"5"),
    ])
    _shard(tmp_path / "s-1.tar.gz", [("100.jpg", _jpeg(100)), ("100.cls", b"9"), ("101.txt", b"no image"),
                                     ("102.jpg", _jpeg(102)), ("103.jpg", b"junk")])
    return str(tmp_path / "s-*.tar.gz")


def _same(a, b) -> None:
    assert torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels)
    assert (a.keys, a.captions, a.source, a.skipped, a.space) == (b.keys, b.captions, b.source, b.skipped, b.space)


def test_synthetic_shards_read_as_webdataset_reads_them(shards):
    mine, ref = load_shards(shards, 16), load_in_memory(shards, 16)
    _same(mine, ref)
    assert mine.keys == ["a/000", "001", "100", "102"]
    assert mine.skipped == 6  # __info__ (a sample without image), 002 (corrupt), 003, 004 (suffix x.jpg), 101, 103
    assert mine.labels.tolist() == [3, 7, 9, -1] and mine.captions[0] == "un chat"


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5])
def test_a_limit_cuts_across_shards_like_the_loader(shards, limit):
    _same(load_shards(shards, 16, limit), load_in_memory(shards, 16, Filter(limit=limit)))


def test_meta_members_are_skipped(shards):
    first = sorted(Path(shards).parent.glob("s-0.tar.gz"))[0]
    assert [s["__key__"] for s in raw_samples([str(first)])] == ["__info__", "a/000", "001", "002", "003", "004"]


def test_real_cifar_shards_match_with_sets_decoded_together(cifar):
    train, test = load_shard_sets([(str(cifar / "train-0000.tar.gz"), 300), (str(cifar / "test-0000.tar.gz"), 200)], 32)
    _same(train, load_in_memory(cifar / "train-0000.tar.gz", 32, Filter(limit=300)))
    _same(test, load_in_memory(cifar / "test-0000.tar.gz", 32, Filter(limit=200)))


def test_no_usable_sample_is_an_error(tmp_path):
    _shard(tmp_path / "bad.tar.gz", [("0.jpg", b"junk")])
    with pytest.raises(DataError, match="no usable samples"):
        load_shards(tmp_path / "bad.tar.gz")
    with pytest.raises(DataError, match="no files match"):
        load_shards(str(tmp_path / "missing-*.tar.gz"))
