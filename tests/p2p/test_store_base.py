"""Receiver (verified, resumable receipt on hashing/writing threads) and write_all."""

from __future__ import annotations

import hashlib
import os

import pytest

from hddm_p2p.errors import IntegrityError
from hddm_p2p.p2p.cid import cid_of_bytes
from hddm_p2p.p2p.store.base import Receiver, part_path, write_all
from tests.p2p.test_cid import MiB, pattern


def test_write_all_writes_everything_in_slices(tmp_path):
    data = pattern(MiB + 12345)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        write_all(fd, memoryview(data))
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data


@pytest.mark.parametrize("prefix", [0, 5, 4 * MiB, 5 * MiB + 3])
def test_receiver_resumes_a_prefix_and_verifies(tmp_path, prefix):
    data = pattern(9 * MiB + 7)
    dest = tmp_path / "out.bin"
    part_path(dest).write_bytes(data[:prefix])
    r = Receiver(dest, cid_of_bytes(data), len(data))
    assert r.offset == prefix
    for i in range(prefix, len(data), 3 * MiB):
        r.write(bytearray(data[i:i + 3 * MiB]))  # a fresh buffer per block, as the network delivers
    digest = r.commit()
    assert dest.read_bytes() == data and not part_path(dest).exists()
    assert (digest.cid, digest.sha256, digest.size) == (cid_of_bytes(data), hashlib.sha256(data).hexdigest(), len(data))


def test_receiver_close_keeps_a_prefix_in_order(tmp_path):
    data = pattern(20 * MiB)
    dest = tmp_path / "out.bin"
    r = Receiver(dest, cid_of_bytes(data), len(data))
    for i in range(0, 12 * MiB, MiB):
        r.write(data[i:i + MiB])
    r.close()  # interrupted: whatever reached the disk is a prefix, resumable
    kept = part_path(dest).read_bytes()
    assert 0 < len(kept) <= 12 * MiB and data.startswith(kept)


def test_receiver_refuses_more_than_declared_and_wrong_content(tmp_path):
    data = pattern(2 * MiB)
    r = Receiver(tmp_path / "a", cid_of_bytes(data), len(data))
    with pytest.raises(IntegrityError, match="more than the declared"):
        r.write(data + b"x")
    assert not part_path(tmp_path / "a").exists()
    r = Receiver(tmp_path / "b", cid_of_bytes(data), len(data))
    r.write(data[:-1] + b"\0")
    with pytest.raises(IntegrityError, match="discarded"):
        r.commit()
    assert not (tmp_path / "b").exists() and not part_path(tmp_path / "b").exists()
