"""``LocalStore``: the embedded default store, a content-addressed directory (no daemon needed).

Layout under ``root`` (default ``$HDDM_HOME/store``)::

    blobs/<cid>      the file's bytes, named by its CID (unixfs-v1-2025 profile, computed locally)
    tmp/             files being written; renamed into blobs/ once their CID is known

Blobs are verified again whenever they are read, so a corrupted disk never passes silently.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hddm_p2p.errors import IntegrityError, StoreError
from hddm_p2p.p2p.cid import FileDigest, cid_of_bytes, parse_cid
from hddm_p2p.p2p.hashing import ParallelHasher, read_blocks
from hddm_p2p.p2p.store.base import MANIFEST_MAX, Receiver, Store, transfer_progress, write_all
from hddm_p2p.paths import store_dir

_CHUNK = 4 << 20  # bytes per read when copying a blob out


class LocalStore(Store):
    """Blobs in a directory, named by CID. Writes are atomic (temp file in the same directory + rename)."""

    kind = "local"

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else store_dir()
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def blob_path(self, cid: str) -> Path:
        return self.blobs / parse_cid(cid)

    def add_file(self, path: Path, *, progress: bool = False) -> FileDigest:
        path = Path(path)
        with open(path, "rb", buffering=0) as src, self._temp() as (tmp, out), \
                transfer_progress(f"store {path.name}", path.stat().st_size, progress) as advance, \
                ParallelHasher(sink=lambda block: write_all(out.fileno(), block)) as hasher:
            for block in read_blocks(src, hasher):  # one read: hashed on two threads, copied on a third
                advance(len(block))
            digest = hasher.finalize()
            self._commit(tmp, out, digest.cid)
        return digest

    def put_bytes(self, data: bytes) -> str:
        cid = cid_of_bytes(data)
        with self._temp() as (tmp, out):
            out.write(data)
            self._commit(tmp, out, cid)
        return cid

    def download(self, cid: str, dest: Path, *, size: int | None = None, progress: bool = True) -> FileDigest:
        cid = parse_cid(cid)
        blob = self._existing(cid)
        receiver = Receiver(dest, cid, size)
        try:
            with open(blob, "rb") as src, \
                    transfer_progress(f"copy {cid[:16]}…", blob.stat().st_size, progress) as advance:
                src.seek(receiver.offset)
                advance(receiver.offset)
                while chunk := src.read(_CHUNK):
                    receiver.write(chunk)
                    advance(len(chunk))
        except BaseException:
            receiver.close()
            raise
        try:
            return receiver.commit()
        except IntegrityError as e:
            raise IntegrityError(f"{e} (the local blob {blob} is corrupted: delete it and add the file again)") from None

    def cat(self, cid: str, *, max_size: int = MANIFEST_MAX) -> bytes:
        cid = parse_cid(cid)
        blob = self._existing(cid)
        if blob.stat().st_size > max_size:
            raise StoreError(f"{cid} is {blob.stat().st_size} bytes, more than the {max_size} allowed here")
        data = blob.read_bytes()
        if cid_of_bytes(data) != cid:
            raise IntegrityError(f"{cid}: the local blob {blob} does not hash to its name (corrupted); delete it")
        return data

    def has(self, cid: str) -> bool:
        return self.blob_path(cid).is_file()

    def pin(self, cid: str) -> None:
        """Local blobs are never garbage-collected; only checks that ``cid`` is present."""
        self._existing(parse_cid(cid))

    # --- helpers ---------------------------------------------------------------------------

    def _existing(self, cid: str) -> Path:
        blob = self.blobs / cid
        if not blob.is_file():
            raise StoreError(f"{cid} is not in the local store {self.root}; fetch it with --store ipfs "
                             "or add it with `hddm publish`")
        return blob

    def _temp(self):
        self.tmp.mkdir(parents=True, exist_ok=True)
        return _TempFile(self.tmp)

    def _commit(self, tmp: Path, out, cid: str) -> None:
        out.flush()
        os.fsync(out.fileno())
        self.blobs.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, self.blobs / cid)


class _TempFile:
    """``with _TempFile(dir) as (path, file)``: a temp file removed on exit unless renamed away."""

    def __init__(self, directory: Path):
        fd, name = tempfile.mkstemp(dir=directory, prefix="put-")
        self.path, self.file = Path(name), os.fdopen(fd, "wb")

    def __enter__(self):
        return self.path, self.file

    def __exit__(self, *exc) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)
