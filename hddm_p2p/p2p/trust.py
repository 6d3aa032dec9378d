"""Trust policy: whose manifests are accepted, and which versions were already seen.

``$HDDM_HOME/trust.json`` holds the trusted publisher keys, the highest version seen per (publisher, kind/name)
with the CID that carried it, and revocations learned from trusted catalogs. ``check`` only reads; ``record``
writes, and callers run it only after *every* other check (signature, artifacts) passed — so a refused
manifest never changes the trust store (TUF-style rollback protection without a half-updated state).
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hddm_p2p.errors import KeyStoreError, TrustError
from hddm_p2p.p2p._files import read_json, write_json
from hddm_p2p.p2p.manifests import CatalogManifest, Header
from hddm_p2p.p2p.signing import DID_PREFIX, did_from_key, public_key_from_did
from hddm_p2p.paths import hddm_home


@dataclass(frozen=True)
class TrustedKey:
    did: str
    name: str
    added: str


def did_from_argument(arg: str) -> str:
    """A did:key from ``arg``: a did itself, or a file holding a did, a PEM public key or a PEM private key."""
    if arg.startswith("did:"):
        public_key_from_did(arg)  # SignatureError if malformed
        return arg
    path = Path(arg)
    if not path.is_file():
        raise TrustError(f"{arg!r} is neither a did:key nor a readable key file")
    data = path.read_bytes().strip()
    if data.startswith(DID_PREFIX.encode()):
        return did_from_argument(data.decode())
    for load in (serialization.load_pem_public_key, lambda d: serialization.load_pem_private_key(d, None)):
        try:
            key = load(data)
        except (ValueError, TypeError):
            continue
        if isinstance(key, (Ed25519PublicKey, Ed25519PrivateKey)):
            return did_from_key(key)
    raise KeyStoreError(f"{path} holds no did:key or unencrypted Ed25519 PEM key")


class TrustStore:
    """Trusted publishers, version memory and revocations in one JSON file (atomic, locked writes)."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else hddm_home() / "trust.json"

    def _load(self) -> dict[str, Any]:
        data = read_json(self.path, {}, TrustError)
        for key in ("publishers", "seen", "revoked_manifests", "revoked_keys", "rotated_keys"):
            data.setdefault(key, {})
        return data

    @contextmanager
    def _edit(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._load()
            yield data
            write_json(self.path, data)

    # --- publishers ---------------------------------------------------------------------------
    def add(self, did_or_keyfile: str, name: str | None = None) -> TrustedKey:
        did = did_from_argument(did_or_keyfile)
        added = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._edit() as data:
            data["publishers"][did] = {"name": name or did[-8:], "added": added}
        return TrustedKey(did, name or did[-8:], added)

    def remove(self, did_or_name: str) -> TrustedKey:
        with self._edit() as data:
            for did, rec in data["publishers"].items():
                if did_or_name in (did, rec["name"]):
                    del data["publishers"][did]
                    return TrustedKey(did, rec["name"], rec["added"])
        raise TrustError(f"{did_or_name!r} is not in the trust store; see `hddm trust list`")

    def list(self) -> list[TrustedKey]:
        return [TrustedKey(d, r["name"], r["added"]) for d, r in sorted(self._load()["publishers"].items())]

    def is_trusted(self, did: str) -> bool:
        return did in self._load()["publishers"]

    def highest(self, publisher: str, slot: str) -> tuple[int, str] | None:
        """(version, manifest CID) of the highest version accepted for ``publisher`` and ``kind/name``."""
        rec = self._load()["seen"].get(publisher, {}).get(slot)
        return (rec["version"], rec["cid"]) if rec else None

    # --- policy ---------------------------------------------------------------------------------
    def check(self, m: Header, cid: str, *, allow_untrusted: bool = False, allow_downgrade: bool = False,
              now: datetime | None = None) -> None:
        """TrustError unless ``m`` (already signature-checked, stored at ``cid``) is acceptable. Writes nothing."""
        data, now = self._load(), now or datetime.now(timezone.utc)
        who = f"{m.slot} v{m.version} from {m.publisher}"
        if m.publisher in data["revoked_keys"]:
            raise TrustError(f"{who}: the publisher key was revoked (by {data['revoked_keys'][m.publisher]})")
        if cid in data["revoked_manifests"]:
            raise TrustError(f"{who}: manifest {cid} was revoked by its catalog; ask the publisher for a newer one")
        rotated = data["rotated_keys"].get(m.publisher)
        if rotated and m.created >= datetime.fromisoformat(rotated["at"]):
            raise TrustError(f"{who}: signed on {m.created.isoformat()}, after the key was rotated to "
                             f"{rotated['new']} on {rotated['at']}; ask for a manifest signed by the new key")
        if not allow_untrusted and m.publisher not in data["publishers"]:
            raise TrustError(f"{who}: publisher is not in your trust store; run `hddm trust add {m.publisher}` "
                             "if you trust it, or pass --allow-untrusted")
        if m.expired(now):
            raise TrustError(f"{who}: expired on {m.expires.isoformat()}; ask the publisher for a fresh manifest")
        seen = data["seen"].get(m.publisher, {}).get(m.slot)
        if seen and not allow_downgrade:
            if m.version < seen["version"]:
                raise TrustError(f"{who}: older than v{seen['version']} already seen ({seen['cid']}); "
                                 "pass --allow-downgrade to accept a rollback")
            if m.version == seen["version"] and cid != seen["cid"]:
                raise TrustError(f"{who}: a different manifest ({seen['cid']}) was already seen with the same "
                                 "version; the publisher must bump the version (or pass --allow-downgrade)")

    def record(self, m: Header, cid: str) -> None:
        """Remember ``m``'s version if it is the highest seen. Call only after every check passed."""
        with self._edit() as data:
            slots = data["seen"].setdefault(m.publisher, {})
            seen = slots.get(m.slot)
            if seen is None or m.version >= seen["version"]:
                slots[m.slot] = {"version": m.version, "cid": cid}

    def rotate(self, old: str, new: str, at: datetime) -> None:
        """Trust ``new`` in place of ``old`` from ``at`` on; call only with a verified statement (rotation.py)."""
        with self._edit() as data:
            if old not in data["publishers"]:
                raise TrustError(f"rotation from {old}: that key is not in your trust store, so it cannot vouch "
                                 f"for {new}; add the new key with `hddm trust add` if you trust it")
            for did in (old, new):
                if did in data["revoked_keys"]:
                    raise TrustError(f"rotation from {old} to {new}: {did} was revoked")
            if old in data["rotated_keys"]:
                raise TrustError(f"{old} was already rotated to {data['rotated_keys'][old]['new']}; "
                                 "a second rotation of the same key is refused")
            name = data["publishers"][old]["name"]
            data["publishers"][new] = {"name": name, "added": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            data["rotated_keys"][old] = {"new": new, "at": at.isoformat()}

    def apply_revocations(self, catalog: CatalogManifest, *, endorsed: bool = False) -> None:
        """Adopt a verified catalog's revocations: only from a trusted publisher, or a catalog ``endorsed``
        by a curator threshold (threshold.py)."""
        if not endorsed and catalog.publisher not in self._load()["publishers"]:
            return
        with self._edit() as data:
            for cid in catalog.revoked_manifests:
                data["revoked_manifests"][cid] = catalog.publisher
            for did in catalog.revoked_keys:
                data["revoked_keys"][did] = catalog.publisher
