"""Where ``hddm assemble`` finds its experts: manifest CIDs, a catalog, or a local folder.

``--dir DIR`` takes a folder whose sub-folders are either
- expert directories (``expert.json`` + ``model.safetensors``, as ``hddm train expert`` writes them): each is
  signed with your key and published into the store first, exactly as ``hddm publish`` would (a new manifest
  version each time; publish once and use ``--experts CID`` for a lock that never changes), or
- signed bundles (``manifest.json`` + the artifact files it names, e.g. copied from someone else): the
  signature and trust policy are checked, every file's sha256 and CID is compared with the manifest, and
  only then are they added to the store.
``DIR`` itself may be one such folder. Everything then goes through ``fetch_manifest`` like any CID.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hddm_p2p.errors import DataError, IntegrityError, ManifestError
from hddm_p2p.p2p.catalog import resolve_catalog
from hddm_p2p.p2p.cid import parse_cid
from hddm_p2p.p2p.fetch import verify_bytes
from hddm_p2p.p2p.manifests import Published
from hddm_p2p.p2p.store.base import Store
from hddm_p2p.p2p.trust import TrustStore


@dataclass
class Sources:
    """Manifest CIDs in ensemble order; ``own`` are those this run just signed with the local key."""

    cids: list[str] = field(default_factory=list)
    own: set[str] = field(default_factory=set)
    published: list[tuple[str, str]] = field(default_factory=list)  # (folder, cid) signed by this run


def from_cids(values: list[str]) -> Sources:
    cids = [parse_cid(v.removeprefix("/ipfs/")) for v in values]
    dup = sorted({c for c in cids if cids.count(c) > 1})
    if dup:
        raise DataError(f"expert {dup[0]} is listed twice; name each expert once")
    return Sources(cids)


def from_catalog(store: Store, ref: str, trust: TrustStore, allow_untrusted: bool) -> Sources:
    """The expert entries of a verified catalog (router entries are skipped; revoked CIDs are dropped)."""
    _, catalog = resolve_catalog(store, ref, trust, allow_untrusted=allow_untrusted)
    revoked = set(catalog.revoked_manifests)
    cids = [e.cid for e in catalog.entries if e.kind in (None, "expert") and e.cid not in revoked]
    if not cids:
        raise DataError(f"catalog {ref} lists no experts; ask its publisher, or name experts with --experts")
    return Sources(cids)


def _bundles(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise DataError(f"--dir {directory} is not a directory")
    marker = ("expert.json", "manifest.json")
    if any((directory / m).is_file() for m in marker):
        return [directory]
    found = sorted(d for d in directory.iterdir() if d.is_dir() and any((d / m).is_file() for m in marker))
    if not found:
        raise DataError(f"{directory} holds no expert directories (expert.json + model.safetensors) and no signed "
                        "bundles (manifest.json + artifacts); see `hddm assemble --help`")
    return found


def import_bundle(folder: Path, store: Store, trust: TrustStore, allow_untrusted: bool) -> str:
    """Verify ``folder/manifest.json`` and the files it names, add them to ``store``; returns the manifest CID."""
    data = (folder / "manifest.json").read_bytes()
    _, m = verify_bytes(data, trust, allow_untrusted=allow_untrusted)
    if not isinstance(m, Published):
        raise ManifestError(f"{folder / 'manifest.json'} is a {m.schema_} document, not an expert manifest")
    for a in m.artifacts:
        path = folder / a.name
        if not path.is_file():
            raise DataError(f"{path} is missing; the bundle must hold every artifact its manifest names")
        digest = store.add_file(path)
        if (digest.cid, digest.sha256, digest.size) != (a.cid, a.sha256, a.size):
            raise IntegrityError(f"{path} does not match its manifest (sha256 {digest.sha256[:16]}…, expected "
                                 f"{a.sha256[:16]}…); the bundle was altered")
    return store.put_bytes(data)


def from_dir(directory: Path, store: Store, trust: TrustStore, allow_untrusted: bool, key: str | None = None,
             passphrase: str | None = None, progress: bool = True) -> Sources:
    from hddm_p2p.p2p.publish import publish_dir

    out = Sources()
    for folder in _bundles(Path(directory)):
        if (folder / "manifest.json").is_file():
            cid = import_bundle(folder, store, trust, allow_untrusted)
        else:
            cid = publish_dir(folder, store, key_name=key, passphrase=passphrase, progress=progress).cid
            out.own.add(cid)
            out.published.append((str(folder), cid))
        out.cids.append(cid)
    return out
