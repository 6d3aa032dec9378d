"""LocalStore: content addressing, atomic verified reads, resume, corruption."""

from __future__ import annotations

import hashlib

import pytest

from hddm_p2p.errors import IntegrityError, SpecError, StoreError
from hddm_p2p.p2p.cid import cid_of_bytes, hash_file
from hddm_p2p.p2p.store import LocalStore, open_store
from hddm_p2p.p2p.store.base import part_path
from tests.p2p.test_cid import MiB, pattern


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


def test_put_get_round_trip(store, tmp_path):
    src = tmp_path / "w.bin"
    src.write_bytes(pattern(2 * MiB + 3))
    digest = store.add_file(src)
    assert digest == hash_file(src)
    assert store.put_file(src) == digest.cid
    assert (store.blobs / digest.cid).read_bytes() == src.read_bytes()
    assert store.has(digest.cid) and not store.has(cid_of_bytes(b"other"))
    out = store.get_file(digest.cid, tmp_path / "out" / "w.bin", size=digest.size, progress=False)
    assert out.read_bytes() == src.read_bytes()
    assert not part_path(out).exists() and list(store.tmp.iterdir()) == []


def test_put_bytes_and_cat(store):
    cid = store.put_bytes(b'{"kind": "expert"}')
    assert cid == cid_of_bytes(b'{"kind": "expert"}')
    assert store.cat(cid) == b'{"kind": "expert"}'
    with pytest.raises(StoreError, match="more than"):
        store.cat(cid, max_size=4)
    store.pin(cid)


def test_missing_cid_is_a_store_error(store, tmp_path):
    with pytest.raises(StoreError, match="not in the local store"):
        store.get_file(cid_of_bytes(b"x"), tmp_path / "x", progress=False)
    with pytest.raises(StoreError):
        store.pin(cid_of_bytes(b"x"))


def test_corrupted_blob_is_refused_and_nothing_is_left(store, tmp_path):
    cid = store.put_bytes(pattern(1000))
    blob = store.blobs / cid
    blob.write_bytes(b"\0" + blob.read_bytes()[1:])
    dest = tmp_path / "dest.bin"
    with pytest.raises(IntegrityError, match="corrupted"):
        store.get_file(cid, dest, progress=False)
    assert not dest.exists() and not part_path(dest).exists()
    with pytest.raises(IntegrityError):
        store.cat(cid)


def test_wrong_declared_size_is_refused(store, tmp_path):
    cid = store.put_bytes(pattern(1000))
    with pytest.raises(IntegrityError, match="more than the declared"):
        store.get_file(cid, tmp_path / "d", size=999, progress=False)
    with pytest.raises(IntegrityError, match="size 1000"):
        store.get_file(cid, tmp_path / "d", size=1001, progress=False)
    assert list(tmp_path.glob("d*")) == []


def test_resume_from_a_part_file(store, tmp_path):
    data = pattern(3 * MiB)
    cid = store.put_bytes(data)
    dest = tmp_path / "dest.bin"
    part_path(dest).write_bytes(data[: MiB + 123])  # an interrupted earlier download
    digest = store.download(cid, dest, size=len(data), progress=False)
    assert dest.read_bytes() == data and digest.sha256 == hashlib.sha256(data).hexdigest()


def test_garbage_part_file_is_discarded(store, tmp_path):
    data = pattern(5000)
    cid = store.put_bytes(data)
    dest = tmp_path / "dest.bin"
    part_path(dest).write_bytes(b"garbage")
    with pytest.raises(IntegrityError):
        store.get_file(cid, dest, progress=False)
    assert not part_path(dest).exists()
    assert store.get_file(cid, dest, progress=False).read_bytes() == data  # the retry starts clean


def test_open_store(hddm_home):
    store = open_store("local")
    assert isinstance(store, LocalStore) and store.root == hddm_home / "store"
    with pytest.raises(SpecError):
        open_store("s3")
    with pytest.raises(SpecError):
        open_store("local", api="/ip4/127.0.0.1/tcp/5001")
