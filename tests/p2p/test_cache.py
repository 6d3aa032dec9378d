"""Cache: nothing becomes visible before size, sha256 and CID match; resume; two processes at once."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from hddm_p2p.errors import IntegrityError, ManifestError
from hddm_p2p.p2p.cache import Cache
from hddm_p2p.p2p.store import LocalStore
from tests.p2p.test_cid import MiB, pattern


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


@pytest.fixture
def artifact(store):
    data = pattern(2 * MiB + 77)
    return store.put_bytes(data), hashlib.sha256(data).hexdigest(), len(data), data


def visible_files(cache: Cache) -> list[Path]:
    return [p for p in (cache.root / "blobs").rglob("*") if p.is_file()] if (cache.root / "blobs").exists() else []


def test_fetch_verifies_and_reuses(store, artifact, tmp_path):
    cid, sha, size, data = artifact
    cache = Cache(tmp_path / "cache")
    path = cache.fetch(store, cid, sha256=sha, size=size, name="model.safetensors", progress=False)
    assert path == cache.path_for(cid, "model.safetensors") and path.read_bytes() == data
    (store.blobs / cid).unlink()  # the second fetch must not need the store
    assert cache.fetch(store, cid, sha256=sha, size=size, name="model.safetensors", progress=False) == path
    assert list((cache.root / "partial").iterdir()) == []


def test_wrong_sha256_leaves_nothing_visible(store, artifact, tmp_path):
    cid, sha, size, _ = artifact
    cache = Cache(tmp_path / "cache")
    with pytest.raises(IntegrityError, match="manifest declares sha256"):
        cache.fetch(store, cid, sha256="0" * 64, size=size, name="m.safetensors", progress=False)
    with pytest.raises(IntegrityError):
        cache.fetch(store, cid, sha256=sha, size=size + 1, name="m.safetensors", progress=False)
    assert visible_files(cache) == [] and list((cache.root / "partial").iterdir()) == []


def test_corrupted_blob_in_store_leaves_nothing_visible(store, artifact, tmp_path):
    cid, sha, size, data = artifact
    (store.blobs / cid).write_bytes(data[:-1] + b"\0")
    cache = Cache(tmp_path / "cache")
    with pytest.raises(IntegrityError):
        cache.fetch(store, cid, sha256=sha, size=size, name="m.safetensors", progress=False)
    assert visible_files(cache) == [] and list((cache.root / "partial").iterdir()) == []


def test_changed_cached_file_is_fetched_again(store, artifact, tmp_path):
    cid, sha, size, data = artifact
    cache = Cache(tmp_path / "cache")
    path = cache.fetch(store, cid, sha256=sha, size=size, name="m.bin", progress=False)
    os.chmod(path, 0o644)
    path.write_bytes(b"\0" * size)  # same size, new mtime: the record no longer applies
    with pytest.raises(IntegrityError):
        cache.verify(path, sha)
    assert cache.fetch(store, cid, sha256=sha, size=size, name="m.bin", progress=False).read_bytes() == data


def test_resume_uses_the_partial_download(store, artifact, tmp_path):
    cid, sha, size, data = artifact
    cache = Cache(tmp_path / "cache")
    part = cache.root / "partial" / f"{cid}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:MiB])
    path = cache.fetch(store, cid, sha256=sha, size=size, name="m.bin", progress=False)
    assert path.read_bytes() == data and not part.exists()


def test_verify_record_skips_rehash_until_the_file_changes(tmp_path, monkeypatch):
    cache = Cache(tmp_path / "cache")
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    sha = hashlib.sha256(b"weights").hexdigest()
    cache.verify(f, sha)
    import hddm_p2p.p2p.cache as cache_mod

    def no_hashing(path):
        raise AssertionError("re-hashed an unchanged file")

    monkeypatch.setattr(cache_mod, "hash_file", no_hashing)
    cache.verify(f, sha, size=7)
    f.write_bytes(b"weightz")
    with pytest.raises(AssertionError, match="re-hashed"):
        cache.verify(f, sha)
    with pytest.raises(IntegrityError, match="missing"):
        cache.verify(tmp_path / "nope", sha)


def test_bad_artifact_names_are_refused(tmp_path, artifact):
    cache = Cache(tmp_path / "cache")
    for name in ["../escape", "a/b", "", ".hidden"]:
        with pytest.raises(ManifestError):
            cache.path_for(artifact[0], name)


class SlowLoggingStore(LocalStore):
    """A LocalStore that logs each download and takes a while, to expose racing fetches."""

    def download(self, cid, dest, **kw):
        with open(self.root / "downloads.log", "a") as log:
            log.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        return super().download(cid, dest, **kw)


def _fetch_in_child(args):
    store_root, cache_root, cid, sha, size = args
    path = Cache(Path(cache_root)).fetch(SlowLoggingStore(Path(store_root)), cid, sha256=sha, size=size,
                                         name="m.bin", progress=False)
    return str(path), hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_processes_fetch_the_same_cid_safely(store, artifact, tmp_path):
    cid, sha, size, _ = artifact
    args = (str(store.root), str(tmp_path / "cache"), cid, sha, size)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_fetch_in_child, [args, args])
    assert results[0] == results[1] and results[0][1] == sha
    assert len((store.root / "downloads.log").read_text().split()) == 1  # the second waited, then reused
