"""Catalogs: a publisher's signed list of manifest CIDs (with revocations) under the publisher's IPNS name.

The IPNS name is derived from the same Ed25519 key that signs the manifests (``signing.ipns_name``), so a
catalog resolved by name must also be *signed* by the key that name belongs to. With Kubo the name is
published through the node's keychain (the key is imported once); with the embedded ``LocalStore`` a
``names.json`` in the store maps the same ``k51...`` name to the latest catalog CID.

    publish_catalog(store, "main", add=[cid1, cid2])      # → CatalogResult(cid, ipns, manifest)
    cid, catalog = resolve_catalog(store, "k51...", TrustStore())
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from hddm_p2p.errors import ManifestError, StoreError, TrustError
from hddm_p2p.p2p._files import read_json, write_json
from hddm_p2p.p2p.cid import parse_cid
from hddm_p2p.p2p.fetch import verify_bytes
from hddm_p2p.p2p.keys import KeyStore
from hddm_p2p.p2p.manifests import (CATALOG_SCHEMA, CatalogManifest, Published, manifest_bytes, sign_manifest,
                                    validate, verify_signature)
from hddm_p2p.p2p.signing import did_from_key, ipns_name, parse_json, public_key_from_did
from hddm_p2p.p2p.store.base import Store
from hddm_p2p.p2p.trust import TrustStore
from hddm_p2p.paths import hddm_home


@dataclass(frozen=True)
class CatalogResult:
    cid: str
    ipns: str
    manifest: CatalogManifest


def _names_file(store: Store) -> Path:
    return Path(getattr(store, "root", hddm_home())) / "names.json"


def _entry(store: Store, cid: str) -> dict:
    """A catalog entry for manifest ``cid``: fetched and signature-checked so a catalog never lists junk."""
    m = verify_signature(parse_json(store.cat(parse_cid(cid))))
    if not isinstance(m, Published):
        raise ManifestError(f"{cid} is a {m.schema_} document; catalogs list expert and router manifests")
    return {"cid": parse_cid(cid), "name": m.name, "kind": m.slot.split("/")[0]}


def _previous(did: str, name: str) -> dict | None:
    return read_json(hddm_home() / "catalogs" / f"{ipns_name(did)}.json", {}, ManifestError).get(name)


def publish_name(store: Store, key_name: str, pem: bytes, ipns: str, cid: str) -> None:
    """Point ``ipns`` at ``cid``: Kubo's ``name publish`` with the imported key, or the local names file."""
    if store.kind == "local":
        names = read_json(_names_file(store), {}, StoreError)
        names[ipns] = cid
        write_json(_names_file(store), names)
        return
    kubo_name = f"hddm-{key_name}"
    got = store.client.key_list().get(kubo_name) or store.key_import(kubo_name, pem)  # imported once per node
    if got != ipns:
        raise TrustError(f"the Kubo key {kubo_name!r} has IPNS name {got}, but key {key_name!r} is {ipns}; "
                         f"remove it with `ipfs key rm {kubo_name}` and publish again")
    store.name_publish(cid, key=kubo_name)


def publish_catalog(store: Store, name: str, *, add: Iterable[str] = (), revoke: Iterable[str] = (),
                    revoke_keys: Iterable[str] = (), keys: KeyStore | None = None, key_name: str | None = None,
                    passphrase: str | None = None, expires: datetime | None = None) -> CatalogResult:
    """Sign the next version of catalog ``name`` (previous entries + ``add`` − ``revoke``) and publish it."""
    keys = keys or KeyStore()
    key_name = keys.resolve_name(key_name)
    key = keys.load(key_name, passphrase)
    did = did_from_key(key)
    prev = _previous(did, name) or {"version": 0, "entries": [], "revoked_manifests": [], "revoked_keys": []}
    revoked = sorted(set(prev["revoked_manifests"]) | {parse_cid(c) for c in revoke})
    for k in revoke_keys:
        public_key_from_did(k)
    entries = {e["cid"]: e for e in prev["entries"]}
    entries.update({e["cid"]: e for e in (_entry(store, c) for c in add)})
    doc = {"schema": CATALOG_SCHEMA, "name": name, "version": prev["version"] + 1, "publisher": did,
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "expires": expires.isoformat(timespec="seconds") if expires else None,
           "entries": [e for c, e in sorted(entries.items()) if c not in revoked], "revoked_manifests": revoked,
           "revoked_keys": sorted(set(prev["revoked_keys"]) | set(revoke_keys))}
    signed = sign_manifest(validate(doc), key)
    cid = store.put_bytes(manifest_bytes(signed))
    store.pin(cid)
    ipns = ipns_name(did)
    publish_name(store, key_name, keys.export_private(key_name, passphrase), ipns, cid)
    memory = hddm_home() / "catalogs" / f"{ipns}.json"
    write_json(memory, {**read_json(memory, {}, ManifestError), name: signed.to_doc()})
    return CatalogResult(cid, ipns, signed)


def resolve_name(store: Store, ref: str) -> tuple[str, str | None]:
    """(catalog CID, IPNS name or None) for ``k51...``, ``/ipns/k51...``, a CID or ``/ipfs/<cid>``."""
    ref = ref.strip()
    name = ref.removeprefix("/ipns/")
    if not name.startswith("k51"):
        return parse_cid(ref.removeprefix("/ipfs/")), None
    if store.kind == "local":
        cid = read_json(_names_file(store), {}, StoreError).get(name)
        if cid is None:
            raise StoreError(f"no catalog is published under {name} in the local store; "
                             "publish one with `hddm catalog publish`, or use --store ipfs")
        return cid, name
    return parse_cid(store.name_resolve(name).removeprefix("/ipfs/")), name


def resolve_catalog(store: Store, ref: str, trust: TrustStore | None = None, *, allow_untrusted: bool = False,
                    allow_downgrade: bool = False) -> tuple[str, CatalogManifest]:
    """Resolve, fetch and verify a catalog; adopts its revocations if its publisher is trusted."""
    trust = trust or TrustStore()
    cid, name = resolve_name(store, ref)
    cid, m = verify_bytes(store.cat(cid), trust, cid=cid, allow_untrusted=allow_untrusted,
                          allow_downgrade=allow_downgrade)
    if not isinstance(m, CatalogManifest):
        raise ManifestError(f"{cid} is a {m.schema_} document, not a catalog; use `hddm inspect`")
    if name is not None and ipns_name(m.publisher) != name:
        raise TrustError(f"the catalog under {name} is signed by {m.publisher}, whose IPNS name differs; refusing it")
    trust.record(m, cid)
    trust.apply_revocations(m)
    return cid, m
