"""ParallelHasher: the same FileDigest as the one-thread UnixfsHasher, in order, errors and sinks handled."""

from __future__ import annotations

import hashlib
import io
import threading

import pytest

from hddm_p2p.p2p.cid import ImportProfile, UnixfsHasher, cid_of_bytes, hash_stream
from hddm_p2p.p2p.hashing import ParallelHasher, block_size, read_blocks
from tests.p2p.test_cid import MiB, pattern


@pytest.mark.parametrize("n", [0, 1, MiB, 4 * MiB, 4 * MiB + 1, 13 * MiB + 5])
def test_read_blocks_matches_the_sequential_hasher(n):
    data = pattern(n)
    sequential = UnixfsHasher()
    sequential.update(data)
    with ParallelHasher(depth=2) as h:
        blocks = [len(b) for b in read_blocks(io.BytesIO(data), h)]
        digest = h.finalize()
    assert digest == sequential.finalize()
    assert digest.sha256 == hashlib.sha256(data).hexdigest() and digest.size == n
    assert blocks[:-1] == [block_size()] * (len(blocks) - 1)  # whole blocks (multiples of the chunk size)


def test_odd_block_sizes_and_tiny_profiles():
    profile = ImportProfile("tiny", chunk_size=3, max_links=4)
    data = pattern(1000)
    with ParallelHasher(profile) as h:
        for i in range(0, len(data), 7):  # blocks that do not align with chunks
            h.submit(data[i:i + 7])
        assert h.finalize().cid == cid_of_bytes(data, profile)


def test_sink_gets_every_block_in_order_on_another_thread():
    seen, threads = [], set()

    def sink(block) -> None:
        seen.append(bytes(block))
        threads.add(threading.get_ident())

    data = pattern(3 * MiB)
    with ParallelHasher(depth=1) as h:
        h.submit(data[:MiB])  # before the sink is attached: hashed only
        h.attach_sink(sink)
        for i in range(MiB, len(data), 4096):
            h.submit(data[i:i + 4096])
        digest = h.finalize()
    assert b"".join(seen) == data[MiB:] and digest.cid == cid_of_bytes(data)
    assert threads and threading.get_ident() not in threads


def test_a_sink_error_reaches_the_caller():
    def sink(block) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with ParallelHasher(depth=1, sink=sink) as h:
            for _ in range(5):
                h.submit(b"x" * 4096)
            h.drain()


def test_hash_stream_is_the_parallel_path():
    data = pattern(5 * MiB + 1)
    assert hash_stream(io.BytesIO(data)).cid == cid_of_bytes(data)
