"""Fetch a manifest and its artifacts, verifying everything before anything is kept.

Order of checks (each raises before the next runs; the trust store is written only at the very end):

    bytes ─CID─▶ JSON (no duplicate keys) ─schema─▶ model ─Ed25519─▶ publisher signed it
          ─trust─▶ trusted key, not revoked, not expired, not a downgrade
          ─artifacts─▶ size + sha256 + CID (Cache.fetch), weights header (safetensors_check)
          ─record─▶ highest version remembered, manifest.json written beside the artifacts

>>> manifest, paths = fetch_manifest(store, cid, TrustStore())
>>> paths["model.safetensors"]   # a verified file in $HDDM_HOME/cache
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from hddm_p2p.errors import IntegrityError, ManifestError
from hddm_p2p.p2p._files import atomic_write
from hddm_p2p.p2p.cache import Cache
from hddm_p2p.p2p.cid import cid_of_bytes, parse_cid
from hddm_p2p.p2p.manifests import Header, Published, verify_signature
from hddm_p2p.p2p.signing import parse_json
from hddm_p2p.p2p.store.base import Store
from hddm_p2p.p2p.trust import TrustStore
from hddm_p2p.p2p.weights import SAFETENSORS_MEDIA_TYPE, check_weights


def verify_bytes(data: bytes, trust: TrustStore, *, cid: str | None = None, allow_untrusted: bool = False,
                 allow_downgrade: bool = False, now: datetime | None = None) -> tuple[str, Header]:
    """(cid, manifest) for manifest bytes that pass every check but the artifacts'. Writes nothing."""
    actual = cid_of_bytes(data)
    if cid is not None and actual != parse_cid(cid):
        raise IntegrityError(f"manifest bytes hash to {actual}, not the requested {cid}; the store served other content")
    m = verify_signature(parse_json(data))
    trust.check(m, actual, allow_untrusted=allow_untrusted, allow_downgrade=allow_downgrade, now=now)
    return actual, m


class _WeightsGate:
    """Store proxy whose ``download`` checks a weights file while it is still the cache's partial download,
    so a pickle or malformed header never becomes visible in ``blobs/`` (``Cache.fetch`` renames only after)."""

    def __init__(self, store: Store):
        self._store = store

    def download(self, cid: str, dest: Path, **kw):
        digest = self._store.download(cid, dest, **kw)
        try:
            check_weights(dest)
        except BaseException:
            Path(dest).unlink(missing_ok=True)
            raise
        return digest

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def fetch_artifacts(store: Store, m: Published, cache: Cache, *, progress: bool = True) -> dict[str, Path]:
    """Download and verify every artifact of ``m``; on any failure, remove what this call added."""
    paths: dict[str, Path] = {}
    added: list[Path] = []
    try:
        for a in m.artifacts:
            existed = cache.path_for(a.cid, a.name).exists()
            # by name too: a manifest that labels model.safetensors with another media type must not skip the gate
            weights = a.media_type == SAFETENSORS_MEDIA_TYPE or a.name.endswith(".safetensors")
            path = cache.fetch(_WeightsGate(store) if weights else store, a.cid, sha256=a.sha256, size=a.size,
                               name=a.name, progress=progress)
            if not existed:
                added.append(path)
            if weights:
                check_weights(path)  # also covers a copy that was already cached
            paths[a.name] = path
    except BaseException:
        for path in added:
            path.unlink(missing_ok=True)
        raise
    return paths


def fetch_manifest(store: Store, cid: str, trust: TrustStore | None = None, *, cache: Cache | None = None,
                   allow_untrusted: bool = False, allow_downgrade: bool = False, now: datetime | None = None,
                   progress: bool = True) -> tuple[Published, dict[str, Path]]:
    """Fetch manifest ``cid`` from ``store``, verify it and its artifacts, and return (manifest, name → path).

    ``paths`` also holds ``manifest.json``, the exact signed bytes. Raises ManifestError, SignatureError,
    TrustError or IntegrityError; then nothing new remains in the cache and the trust store is unchanged."""
    trust, cache = trust or TrustStore(), cache or Cache()
    data = store.cat(parse_cid(cid))
    cid, m = verify_bytes(data, trust, cid=cid, allow_untrusted=allow_untrusted,
                          allow_downgrade=allow_downgrade, now=now)
    if not isinstance(m, Published):
        raise ManifestError(f"{cid} is a {m.schema_} document, not an expert or router; "
                            "use `hddm catalog show` for catalogs")
    paths = fetch_artifacts(store, m, cache, progress=progress)
    manifest_path = cache.path_for(cid, "manifest.json")
    atomic_write(manifest_path, data)
    trust.record(m, cid)
    return m, {**paths, "manifest.json": manifest_path}
