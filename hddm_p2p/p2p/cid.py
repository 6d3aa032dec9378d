"""Local CID computation, byte-identical to Kubo's ``unixfs-v1-2025`` import profile.

The profile (Kubo ≥ 0.38, ``ipfs add --profile unixfs-v1-2025``) imports a file as a UnixFS v1 DAG:

- the file is cut into fixed 1 MiB chunks (``--chunker size-1048576``);
- each chunk is a ``raw`` block (``--raw-leaves``), CIDv1, sha2-256;
- leaves are gathered into a *balanced* DAG of ``dag-pb`` nodes with at most 1024 links each:
  level-1 nodes hold 1024 consecutive leaves, level-2 nodes 1024 level-1 nodes, ... (boxo's
  ``ipld/unixfs/importer/balanced``); every leaf sits at the same depth;
- a file of one chunk (or an empty file) is its single raw leaf (``bafk...``), anything longer a
  dag-pb root (``bafy...``); strings are base32 multibase.

``UnixfsHasher`` builds the DAG incrementally, keeping only the pending links of each level
(≤ 1024 × depth), so memory is constant and a file is read once; the same pass yields sha256 and size.
``hash_file`` runs the whole-file sha256 and the leaf hashes on two threads (``hddm_p2p.p2p.hashing``).

>>> cid_of_bytes(b"")
'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from multiformats import CID

from hddm_p2p.errors import CidError

RAW, DAG_PB = "raw", "dag-pb"
_UNIXFS_FILE = 2  # unixfs.proto: Data.DataType.File


@dataclass(frozen=True)
class ImportProfile:
    """How a file becomes a DAG. Only ``UNIXFS_V1_2025`` is used for real content; tests shrink
    ``chunk_size``/``max_links`` to exercise deep DAGs against Kubo's ``--chunker``/``--max-file-links``."""

    name: str
    chunk_size: int = 1 << 20  # bytes per raw leaf
    max_links: int = 1024  # children per dag-pb node

    def kubo_add_params(self) -> dict[str, str]:
        """The explicit ``/api/v0/add`` parameters that make Kubo build the same DAG."""
        return {"cid-version": "1", "raw-leaves": "true", "chunker": f"size-{self.chunk_size}",
                "hash": "sha2-256", "trickle": "false", "max-file-links": str(self.max_links)}


UNIXFS_V1_2025 = ImportProfile("unixfs-v1-2025")


@dataclass(frozen=True)
class FileDigest:
    """Everything one read of a file yields: its CID (as Kubo would name it), sha256 hex, byte size."""

    cid: str
    sha256: str
    size: int


@dataclass(frozen=True)
class _Link:
    cid: bytes  # binary CID of the child
    tsize: int  # cumulative size of the child's blocks (dag-pb ``Tsize``)
    filesize: int  # bytes of file content under the child (UnixFS ``blocksizes`` entry)


# --- protobuf wire format (proto2: dag-pb PBNode/PBLink, UnixFS Data) -------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field_bytes(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _unixfs_file_data(children: list[_Link]) -> bytes:
    """UnixFS ``Data{Type=File, filesize, blocksizes...}`` of an internal node (no inline data)."""
    out = _field_varint(1, _UNIXFS_FILE) + _field_varint(3, sum(c.filesize for c in children))
    return out + b"".join(_field_varint(4, c.filesize) for c in children)


def _encode_pbnode(children: list[_Link], data: bytes) -> bytes:
    """Canonical dag-pb: Links (field 2) before Data (field 1); each link carries Hash, an
    empty Name and Tsize, as boxo's merkledag always writes them."""
    links = b"".join(
        _field_bytes(2, _field_bytes(1, c.cid) + _field_bytes(2, b"") + _field_varint(3, c.tsize)) for c in children
    )
    return links + _field_bytes(1, data)


# Binary CIDv1 prefix: version 1, codec (raw 0x55 | dag-pb 0x70), multihash sha2-256 (0x12) of 32 bytes.
# Written out because building a multiformats.CID per 1 MiB leaf costs more (type validation) than hashing it.
_CID_PREFIX = {RAW: bytes([0x01, 0x55, 0x12, 0x20]), DAG_PB: bytes([0x01, 0x70, 0x12, 0x20])}


def _cid(codec: str, block: bytes) -> bytes:
    return _CID_PREFIX[codec] + hashlib.sha256(block).digest()


# --- the balanced DAG, built while streaming -------------------------------------------------

@dataclass
class _DagBuilder:
    """The leaf hashes and the pending links of each level (≤ ``max_links`` × depth): the CID side of a hasher."""

    profile: ImportProfile
    _buf: bytearray = field(default_factory=bytearray)  # a partial chunk carried to the next ``update``
    _levels: list[list[_Link]] = field(default_factory=lambda: [[]])  # pending links per depth, leaves at 0
    _leaves: int = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Cut ``data`` into leaves; whole chunks are hashed straight from ``data`` (no copy)."""
        view, chunk, i = memoryview(data).cast("B"), self.profile.chunk_size, 0
        if self._buf:
            i = min(chunk - len(self._buf), len(view))
            self._buf += view[:i]
            if len(self._buf) < chunk:
                return
            self._leaf(self._buf)
            self._buf = bytearray()
        while len(view) - i >= chunk:
            self._leaf(view[i:i + chunk])
            i += chunk
        self._buf += view[i:]

    def finish(self) -> str:
        """The root CID (base32 text). The last partial chunk is a leaf; an empty file is one empty raw leaf."""
        if self._buf or self._leaves == 0:
            self._leaf(self._buf)
            self._buf = bytearray()
        return str(CID.decode(self._collapse().cid).encode("base32"))

    def _leaf(self, chunk: bytes | bytearray | memoryview) -> None:
        self._leaves += 1
        self._push(0, _Link(_cid(RAW, chunk), len(chunk), len(chunk)))

    def _push(self, depth: int, link: _Link) -> None:
        if depth == len(self._levels):
            self._levels.append([])
        level = self._levels[depth]
        level.append(link)
        if len(level) == self.profile.max_links:  # a full node: seal it, hand it to the level above
            self._levels[depth] = []
            self._push(depth + 1, self._node(level))

    def _collapse(self) -> _Link:
        """Seal the partial node of every level bottom-up until one root remains.

        A lone partial node below the top still gets wrapped, so all leaves keep the same depth
        (boxo's ``fillNodeRec`` always descends to depth 1)."""
        depth = 0
        while True:
            top = max(d for d, level in enumerate(self._levels) if level)
            level = self._levels[depth]
            if depth == top and len(level) == 1:
                return level[0]
            if level:
                self._levels[depth] = []
                self._push(depth + 1, self._node(level))
            depth += 1

    @staticmethod
    def _node(children: list[_Link]) -> _Link:
        block = _encode_pbnode(children, _unixfs_file_data(children))
        tsize = len(block) + sum(c.tsize for c in children)
        return _Link(_cid(DAG_PB, block), tsize, sum(c.filesize for c in children))


class UnixfsHasher:
    """Feed bytes with ``update``; ``finalize`` returns the ``FileDigest``. Single use, one thread.

    For large inputs ``ParallelHasher`` (``hddm_p2p.p2p.hashing``) computes the same on two threads."""

    def __init__(self, profile: ImportProfile = UNIXFS_V1_2025):
        self.profile = profile
        self._dag, self._sha, self._size = _DagBuilder(profile), hashlib.sha256(), 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._sha.update(data)
        self._size += len(data)
        self._dag.update(data)

    def finalize(self) -> FileDigest:
        return FileDigest(self._dag.finish(), self._sha.hexdigest(), self._size)


# --- public helpers ---------------------------------------------------------------------------

def hash_stream(stream: BinaryIO, profile: ImportProfile = UNIXFS_V1_2025,
                on_bytes: Callable[[int], None] | None = None) -> FileDigest:
    """CID, sha256 and size of everything left in ``stream``, read once (sha256 and leaf hashes on two threads)."""
    from hddm_p2p.p2p.hashing import ParallelHasher, read_blocks

    with ParallelHasher(profile) as hasher:
        for block in read_blocks(stream, hasher):
            if on_bytes:
                on_bytes(len(block))
        return hasher.finalize()


def hash_file(path: str | Path, profile: ImportProfile = UNIXFS_V1_2025,
              on_bytes: Callable[[int], None] | None = None) -> FileDigest:
    """One streaming pass over ``path`` → ``FileDigest(cid, sha256, size)``; constant memory."""
    with open(path, "rb", buffering=0) as f:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)  # larger kernel read-ahead
        return hash_stream(f, profile, on_bytes)


def cid_of_file(path: str | Path) -> str:
    """The CID ``ipfs add --only-hash`` (``unixfs-v1-2025`` profile) prints for ``path``."""
    return hash_file(path).cid


def cid_of_bytes(data: bytes, profile: ImportProfile = UNIXFS_V1_2025) -> str:
    """The CID of ``data`` imported as a file (same DAG as ``cid_of_file`` of a file holding it)."""
    hasher = UnixfsHasher(profile)
    hasher.update(data)
    return hasher.finalize().cid


def parse_cid(text: str) -> str:
    """Validate a CID string and return its canonical form (CIDv1, base32, lower case).

    Raises ``CidError`` naming the string when it is not a CID of a raw or dag-pb block
    hashed with sha2-256 (the only kinds this project produces)."""
    try:
        cid = CID.decode(text.strip())
    except Exception as e:  # multiformats raises several unrelated types for bad input
        raise CidError(f"not a valid CID: {text!r} ({e})") from None
    if cid.codec.name not in (RAW, DAG_PB) or cid.hashfun.name != "sha2-256":
        raise CidError(f"unsupported CID {text!r}: codec {cid.codec.name}, hash {cid.hashfun.name}; "
                       "expected a raw or dag-pb block hashed with sha2-256")
    return str(cid.set(version=1).encode("base32"))
