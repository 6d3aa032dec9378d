"""The download cache: artifacts become visible only after size, sha256 and CID all match.

Layout under ``root`` (default ``$HDDM_HOME/cache``)::

    blobs/<cid>/<name>     verified artifacts (the only files anything loads)
    partial/<cid>[.part]   downloads in progress; resumed by the next fetch, never loaded
    locks/<cid>.lock       ``flock`` so two processes fetching one CID do not race
    verified/<key>.json    (path, size, mtime_ns) → sha256 records that let ``verify`` skip re-hashing

>>> path = Cache().fetch(store, cid, sha256=hexdigest, size=n, name="model.safetensors")
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hddm_p2p.errors import IntegrityError, ManifestError
from hddm_p2p.p2p.cid import hash_file, parse_cid
from hddm_p2p.p2p.store.base import Store
from hddm_p2p.paths import cache_dir


def _check_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise ManifestError(f"artifact name {name!r} is not a plain file name")
    return name


class Cache:
    """Verified local copies of remote artifacts, keyed by CID."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else cache_dir()

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r})"

    def path_for(self, cid: str, name: str) -> Path:
        """Where a verified artifact lives (whether or not it is there yet)."""
        return self.root / "blobs" / parse_cid(cid) / _check_name(name)

    def fetch(self, store: Store, cid: str, *, sha256: str, size: int, name: str, progress: bool = True) -> Path:
        """The verified local path of artifact ``cid``, downloading (or resuming) it from ``store`` if needed.

        Raises ``IntegrityError`` when the bytes do not match ``size``, ``sha256`` and ``cid``; then nothing
        is left in ``blobs/`` and the partial download is deleted."""
        cid, final = parse_cid(cid), self.path_for(cid, name)
        with self._locked(cid):
            if final.exists():
                if self._cached_copy_ok(final, cid, sha256, size, name):
                    return final
                final.unlink()  # a cached copy changed on disk: fetch it again
            partial = self.root / "partial" / cid
            digest = store.download(cid, partial, size=size, progress=progress)  # CID checked inside
            if digest.size != size or digest.sha256 != sha256.lower():
                partial.unlink(missing_ok=True)
                raise IntegrityError(f"{name} ({cid}): sha256 {digest.sha256} / {digest.size} bytes, but the "
                                     f"manifest declares sha256 {sha256} / {size} bytes; nothing was cached")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, final)
            self._remember(final, digest.sha256)
            return final

    def verify(self, path: Path, sha256: str, *, size: int | None = None) -> None:
        """Check that ``path`` has sha256 ``sha256`` (and ``size``), or raise ``IntegrityError``.

        A record of an earlier successful check, keyed by (path, size, mtime_ns), skips re-hashing a file
        that has not changed since; any other file is hashed in full."""
        path = Path(path)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise IntegrityError(f"{path} is missing; fetch it again") from None
        if size is not None and st.st_size != size:
            raise IntegrityError(f"{path}: {st.st_size} bytes, expected {size}; delete it and fetch it again")
        if self._recorded(path, st) == sha256.lower():
            return
        actual = hash_file(path).sha256
        if actual != sha256.lower():
            raise IntegrityError(f"{path}: sha256 {actual}, expected {sha256}; delete it and fetch it again")
        self._remember(path, actual)

    def _cached_copy_ok(self, final: Path, cid: str, sha256: str, size: int, name: str) -> bool:
        """Whether ``final`` holds exactly (sha256, size): by its record, else by one read giving sha256 and CID.

        ``IntegrityError`` when the copy is intact (its CID matches) but the manifest's sha256/size are not
        this CID's: then the manifest is wrong, and the verified copy is kept."""
        st = final.stat()
        if st.st_size == size and self._recorded(final, st) == sha256.lower():
            return True
        digest = hash_file(final)
        if digest.size == size and digest.sha256 == sha256.lower():
            self._remember(final, digest.sha256)
            return True
        if digest.cid == cid:
            raise IntegrityError(f"{name} ({cid}): the manifest declares sha256 {sha256} / {size} bytes, "
                                 "which is not this CID's content; refusing it (the cached copy is kept)")
        return False

    # --- verification records ---------------------------------------------------------------

    def _record_path(self, path: Path) -> Path:
        key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
        return self.root / "verified" / f"{key}.json"

    def _recorded(self, path: Path, st: os.stat_result) -> str | None:
        try:
            rec = json.loads(self._record_path(path).read_text())
        except (OSError, ValueError):
            return None
        same = rec.get("path") == str(path.resolve()) and rec.get("size") == st.st_size \
            and rec.get("mtime_ns") == st.st_mtime_ns
        return rec.get("sha256") if same else None

    def _remember(self, path: Path, sha256: str) -> None:
        st = path.stat()
        rec = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
        target = self._record_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".rec-")
        with os.fdopen(fd, "w") as f:
            json.dump(rec, f)
        os.replace(tmp, target)

    @contextmanager
    def _locked(self, cid: str) -> Iterator[None]:
        lock = self.root / "locks" / f"{cid}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, even if the process dies
            yield
