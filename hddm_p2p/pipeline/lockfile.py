"""Reading, writing and re-verifying ``ensemble.lock.json`` (``EnsembleLock``, docs/contracts.md).

The lock is local state, not signed; what makes it safe is that every byte it names is checked again
when the ensemble is loaded: each manifest's CID and signature, each artifact's size and full sha256
(a changed or missing file is an ``IntegrityError``), and the publisher's standing in the trust store
(a key or manifest revoked since assembly is refused).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from hddm_p2p.errors import IntegrityError, ManifestError
from hddm_p2p.p2p._files import atomic_write
from hddm_p2p.p2p.cache import Cache
from hddm_p2p.p2p.cid import cid_of_bytes
from hddm_p2p.p2p.manifests import EnsembleLock, LockMember, Published, validate, verify_signature
from hddm_p2p.p2p.signing import parse_json
from hddm_p2p.p2p.trust import TrustStore

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class VerifiedMember:
    """A lock member whose manifest and artifacts were just checked: ``paths`` maps artifact name → file."""

    member: LockMember
    manifest: Published
    paths: dict[str, Path]

    @property
    def weights(self) -> Path:
        return self.paths[WEIGHTS]


def read_lock(path: Path) -> EnsembleLock:
    """Parse and validate a lock file; ManifestError (one line) if it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"lock file {path} does not exist; create one with `hddm assemble ... --out {path}`")
    lock = validate(parse_json(path.read_bytes()))
    if not isinstance(lock, EnsembleLock):
        raise ManifestError(f"{path} is a {lock.schema_} document, not an ensemble lock (hddm.lock/1)")
    return lock


def write_lock(path: Path, lock: EnsembleLock) -> Path:
    """Write ``lock`` as indented JSON through a temp file + rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(lock.to_doc(), indent=2) + "\n").encode())
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path, sha256: str, size: int | None, what: str, hint: str) -> Path:
    """IntegrityError unless ``path`` exists with exactly ``size`` bytes and sha256 ``sha256`` (hashed in full)."""
    if not path.is_file():
        raise IntegrityError(f"{what} is missing ({path}); {hint}")
    if size is not None and path.stat().st_size != size:
        raise IntegrityError(f"{what} changed: {path.stat().st_size} bytes, the lock pins {size}; {hint}")
    actual = sha256_file(path)
    if actual != sha256:
        raise IntegrityError(f"{what} changed: sha256 {actual[:16]}…, the lock pins {sha256[:16]}…; {hint}")
    return path


def verify_member(member: LockMember, cache: Cache, trust: TrustStore) -> VerifiedMember:
    """Re-check one pinned manifest and its artifacts in the verified download cache."""
    cid, label = member.manifest_cid, f"{member.role} {member.name!r}"
    hint = f"run `hddm fetch {cid}` (or `hddm assemble` again) to restore it"
    mpath = cache.path_for(cid, MANIFEST)
    if not mpath.is_file():
        raise IntegrityError(f"the manifest of {label} ({cid}) is missing from the cache {cache.root}; {hint}")
    data = mpath.read_bytes()
    if cid_of_bytes(data) != cid:
        raise IntegrityError(f"the cached manifest of {label} no longer hashes to {cid}; {hint}")
    manifest = verify_signature(parse_json(data))  # schema (e.g. an unknown objective) + Ed25519
    if not isinstance(manifest, Published) or manifest.publisher != member.publisher or manifest.name != member.name:
        raise IntegrityError(f"{cid} is not the {label} by {member.publisher} that the lock names")
    trust.check(manifest, cid, allow_untrusted=True, allow_downgrade=True)  # revocations and expiry still apply
    paths = {MANIFEST: mpath}
    for a in member.artifacts:
        declared = manifest.artifact(a.name)
        if declared is None or (declared.cid, declared.sha256, declared.size) != (a.cid, a.sha256, a.size):
            raise IntegrityError(f"the lock's entry for {a.name} of {label} does not match its signed manifest; "
                                 "the lock was edited: assemble it again")
        paths[a.name] = check_file(cache.path_for(a.cid, a.name), a.sha256, a.size, f"{a.name} of {label}", hint)
    if WEIGHTS not in paths:
        raise ManifestError(f"the lock pins no {WEIGHTS} for {label}; assemble it again")
    return VerifiedMember(member, manifest, paths)
