"""Local CIDs: structure of the balanced DAG and agreement with fixed golden values.

The golden values were printed by Kubo v0.42.0 (`ipfs add --only-hash --cid-version 1 --raw-leaves
--chunker size-1048576 --max-file-links 1024`); ``test_cid_kubo.py`` re-derives them from the real binary.
"""

from __future__ import annotations

import hashlib
import io

import pytest
from multiformats import CID

import hddm_p2p.p2p.cid as cidmod
from hddm_p2p.errors import CidError
from hddm_p2p.p2p.cid import ImportProfile, UnixfsHasher, cid_of_bytes, cid_of_file, hash_file, hash_stream, parse_cid

MiB = 1 << 20


def pattern(n: int) -> bytes:
    """Deterministic non-repeating bytes (so chunks differ and CIDs catch reordering)."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:n])


def test_empty_and_single_chunk_are_raw_leaves():
    assert cid_of_bytes(b"") == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    one = cid_of_bytes(pattern(MiB))
    assert one.startswith("bafk")
    assert CID.decode(one).digest[2:] == hashlib.sha256(pattern(MiB)).digest()


def test_two_chunks_give_a_dag_pb_root():
    assert cid_of_bytes(pattern(MiB + 1)).startswith("bafy")


def test_hash_file_returns_cid_sha256_size_in_one_pass(tmp_path):
    data = pattern(3 * MiB + 17)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    d = hash_file(path)
    assert (d.cid, d.sha256, d.size) == (cid_of_bytes(data), hashlib.sha256(data).hexdigest(), len(data))
    assert cid_of_file(path) == d.cid


@pytest.mark.parametrize("step", [13, 4096, MiB - 1, MiB, MiB + 3])
def test_update_granularity_does_not_change_the_cid(step):
    data = pattern(2 * MiB + 5)
    hasher = UnixfsHasher()
    for i in range(0, len(data), step):
        hasher.update(data[i:i + step])
    assert hasher.finalize().cid == cid_of_bytes(data)


def _naive_balanced_depth(n_leaves: int, max_links: int) -> int:
    depth = 0
    while max_links ** depth < n_leaves:
        depth += 1
    return depth


@pytest.mark.parametrize("n_leaves", [1, 2, 3, 4, 5, 15, 16, 17, 64, 65])
def test_every_leaf_sits_at_the_same_depth(n_leaves, monkeypatch):
    """Decode the tiny DAG (max 4 links, 2-byte chunks) and check balance and fan-out."""
    blocks: dict[bytes, bytes] = {}
    original = cidmod._encode_pbnode

    def recording(children, data):
        block = original(children, data)
        blocks[bytes(cidmod._cid("dag-pb", block))] = block
        return block

    monkeypatch.setattr(cidmod, "_encode_pbnode", recording)
    hasher = UnixfsHasher(ImportProfile("tiny", chunk_size=2, max_links=4))
    hasher.update(pattern(2 * n_leaves))
    root = CID.decode(hasher.finalize().cid)
    depths = _leaf_depths(bytes(root), blocks)
    assert set(depths) == {_naive_balanced_depth(n_leaves, 4)}
    assert len(depths) == n_leaves


def _leaf_depths(cid: bytes, blocks: dict[bytes, bytes], depth: int = 0) -> list[int]:
    if cid not in blocks:
        return [depth]
    children = _links(blocks[cid])
    assert 1 <= len(children) <= 4
    return [d for child in children for d in _leaf_depths(child, blocks, depth + 1)]


def _links(block: bytes) -> list[bytes]:
    """The Hash of each PBLink (field 2) in a dag-pb block (enough protobuf to walk our own DAGs)."""
    out, i = [], 0
    while i < len(block):
        key, i = _read_varint(block, i)
        length, i = _read_varint(block, i)
        if key >> 3 == 2:
            _, j = _read_varint(block, i)  # PBLink.Hash tag
            hash_len, j = _read_varint(block, j)
            out.append(block[j:j + hash_len])
        i += length
    return out


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        shift += 7
        if b < 0x80:
            return value, i


def test_hash_stream_reports_progress():
    seen = []
    digest = hash_stream(io.BytesIO(pattern(MiB + 10)), on_bytes=seen.append)
    assert sum(seen) == digest.size == MiB + 10


def test_parse_cid_normalises_and_rejects():
    v1 = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert parse_cid(f"  {v1}\n") == v1
    assert parse_cid("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH").startswith("bafybei")
    for bad in ["", "hello", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyk", "../etc/passwd"]:
        with pytest.raises(CidError):
            parse_cid(bad)


def test_binary_cid_prefix_matches_multiformats():
    from multiformats import multihash

    for codec in ("raw", "dag-pb"):
        expected = CID("base32", 1, codec, multihash.digest(b"block", "sha2-256"))
        assert cidmod._cid(codec, b"block") == bytes(expected)
