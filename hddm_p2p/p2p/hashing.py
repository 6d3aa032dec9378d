"""Hashing a stream at the speed of the disk or the network: CID and sha256 on two threads, fed large blocks.

A ``FileDigest`` needs two passes of SHA-256 over every byte: one whole-file sha256, and one per 1 MiB leaf
for the CID. ``ParallelHasher`` runs each pass on its own worker thread (hashlib releases the GIL on buffers
over 2 KiB), so on two cores the pair costs about one pass of wall time, while the calling thread reads the
next block (``readinto``, also GIL-free). Blocks are multiples of the chunk size, so leaves are hashed
straight from the caller's buffer, never copied.

>>> with ParallelHasher() as h:
...     for block in read_blocks(open(path, "rb", buffering=0), h):
...         pass                      # block: a memoryview, already handed to h
...     digest = h.finalize()
"""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Callable, Iterator

from hddm_p2p.p2p.cid import UNIXFS_V1_2025, FileDigest, ImportProfile, _DagBuilder

BLOCK = 4 << 20  # bytes per block handed to the hashing threads (≈ 4 ms of SHA-NI work per pass)
DEPTH = 3  # blocks in flight before ``submit`` waits; a reader needs DEPTH + 1 buffers


def block_size(profile: ImportProfile = UNIXFS_V1_2025, target: int = BLOCK) -> int:
    """The multiple of ``profile.chunk_size`` closest to ``target`` from below (at least one chunk)."""
    return max(1, target // profile.chunk_size) * profile.chunk_size


class ParallelHasher:
    """``UnixfsHasher`` with its two SHA-256 passes on two worker threads, in order.

    ``submit(block)`` hands a block over and returns at once unless more than ``depth`` blocks are still being
    hashed (then it waits for the oldest). The caller must not change a submitted buffer until ``depth`` further
    blocks have been submitted or ``drain``/``finalize`` has returned; ``bytes`` blocks need no such care.
    ``sink``, if given, also gets every block, in order, on a third thread (e.g. ``os.write`` to a file, which
    may stall on writeback without stalling the caller). Errors of a worker are raised by the next
    ``submit``/``drain``. Use as a context manager: ``close`` lets the running work finish and drops the rest,
    so a sink has received a prefix of the blocks, in order."""

    def __init__(self, profile: ImportProfile = UNIXFS_V1_2025, depth: int = DEPTH,
                 sink: Callable[[memoryview], None] | None = None):
        self.profile, self.depth, self.size = profile, depth, 0
        self._dag, self._sha = _DagBuilder(profile), hashlib.sha256()
        self._lanes = [(self._sha.update, _pool("hddm-sha256")), (self._dag.update, _pool("hddm-leaves"))]
        self._pending: deque[list[Future]] = deque()
        if sink is not None:
            self.attach_sink(sink)

    def attach_sink(self, sink: Callable[[memoryview], None]) -> None:
        """From the next ``submit`` on, also pass each block to ``sink`` (e.g. after re-hashing a resumed prefix)."""
        self._lanes.append((sink, _pool("hddm-sink")))

    def submit(self, block: bytes | bytearray | memoryview) -> None:
        self.size += len(block)
        self._pending.append([pool.submit(work, block) for work, pool in self._lanes])
        while len(self._pending) > self.depth:
            self._wait_oldest()

    def drain(self) -> None:
        """Wait until every submitted block is hashed (its buffer may then be reused)."""
        while self._pending:
            self._wait_oldest()

    def finalize(self) -> FileDigest:
        self.drain()
        self.close()
        return FileDigest(self._dag.finish(), self._sha.hexdigest(), self.size)

    def close(self) -> None:
        for _, pool in self._lanes:
            pool.shutdown(wait=True, cancel_futures=True)

    def _wait_oldest(self) -> None:
        for future in self._pending.popleft():
            future.result()

    def __enter__(self) -> ParallelHasher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pool(name: str) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)


def read_blocks(stream: BinaryIO, hasher: ParallelHasher, block: int | None = None) -> Iterator[memoryview]:
    """Read ``stream`` to its end into ``hasher.depth + 1`` rotating buffers, submitting each block to ``hasher``.

    Yields each block after submitting it (e.g. to upload or write it); the view is valid until the next one."""
    size = block or block_size(hasher.profile)
    ring = [bytearray(size) for _ in range(hasher.depth + 1)]
    i = 0
    while True:
        buf = ring[i % len(ring)]  # free: at most ``depth`` newer blocks are in flight
        n = _fill(stream, buf)
        if n == 0:
            return
        view = memoryview(buf)[:n]
        hasher.submit(view)
        yield view
        i += 1
        if n < size:  # a short read only happens at the end of the stream (``_fill`` loops otherwise)
            return


def _fill(stream: BinaryIO, buf: bytearray) -> int:
    """``readinto`` until ``buf`` is full or the stream ends (pipes and sockets return short reads)."""
    view, n = memoryview(buf), 0
    while n < len(buf):
        k = stream.readinto(view[n:])
        if not k:
            break
        n += k
    return n
