"""Publish an expert or router directory: check the weights, add them to a store, sign a manifest, add a card.

    dir/expert.json + dir/model.safetensors
        ──check_weights──▶ store.add_file ──▶ Artifact(cid, sha256, size)
        ──render_card────▶ README.md artifact
        ──sign (Ed25519)─▶ manifest bytes (RFC 8785) ──store.put_bytes──▶ manifest CID

>>> result = publish_dir(Path("runs/c0"), open_store("local"))
>>> result.cid      # what others fetch: `hddm fetch <cid>`
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hddm_p2p.errors import DataError, ManifestError
from hddm_p2p.p2p._files import read_json, write_json
from hddm_p2p.p2p.cid import cid_of_bytes
from hddm_p2p.p2p.keys import KeyStore
from hddm_p2p.p2p.manifests import (EXPERT_SCHEMA, ROUTER_SCHEMA, Artifact, ExpertDescription, Published,
                                    RouterDescription, manifest_bytes, sign_manifest, validate)
from hddm_p2p.p2p.manifests.common import slot_of
from hddm_p2p.p2p.model_card import CARD_MEDIA_TYPE, CARD_NAME, render_card
from hddm_p2p.p2p.signing import did_from_key, parse_json
from hddm_p2p.p2p.store.base import Store
from hddm_p2p.p2p.weights import SAFETENSORS_MEDIA_TYPE, check_weights
from hddm_p2p.paths import hddm_home

WEIGHTS = "model.safetensors"
# description file → (kind, schema id, model of its fields)
_KINDS = {"expert.json": ("expert", EXPERT_SCHEMA, ExpertDescription),
          "router.json": ("router", ROUTER_SCHEMA, RouterDescription)}


@dataclass(frozen=True)
class PublishResult:
    cid: str
    card_cid: str
    manifest: Published

    def to_json(self) -> dict[str, Any]:
        return {"cid": self.cid, "card_cid": self.card_cid, "name": self.manifest.name,
                "version": self.manifest.version, "publisher": self.manifest.publisher,
                "artifacts": [a.to_doc() for a in self.manifest.artifacts]}


def read_description(directory: Path) -> tuple[str, dict[str, Any]]:
    """(schema id, description fields) from ``expert.json`` or ``router.json`` in ``directory``."""
    if not directory.is_dir():
        raise DataError(f"{directory} is not a directory; pass the output directory of `hddm train expert`")
    found = [f for f in _KINDS if (directory / f).is_file()]
    if len(found) != 1:
        raise ManifestError(f"{directory} must hold exactly one of expert.json or router.json (found {found or 'none'})")
    kind, schema, model = _KINDS[found[0]]
    doc = parse_json((directory / found[0]).read_bytes())
    if doc.pop("kind", kind) != kind:
        raise ManifestError(f"{directory / found[0]}: 'kind' must be {kind!r}")
    validate(doc, model)  # one-line ManifestError naming the bad field, before any upload
    return schema, doc


class _VersionMemory:
    """The highest version this machine published per (publisher, kind/name): ``$HDDM_HOME/published.json``."""

    def __init__(self, path: Path | None = None):
        self.path = path or hddm_home() / "published.json"

    def next(self, did: str, slot: str) -> int:
        return read_json(self.path, {}, ManifestError).get(did, {}).get(slot, 0) + 1

    def remember(self, did: str, slot: str, version: int) -> None:
        data = read_json(self.path, {}, ManifestError)
        mine = data.setdefault(did, {})
        mine[slot] = max(version, mine.get(slot, 0))
        write_json(self.path, data)


def _artifact(name: str, cid: str, sha256: str, size: int, media_type: str) -> dict[str, Any]:
    return Artifact.model_validate({"name": name, "cid": cid, "sha256": sha256, "size": size,
                                    "media_type": media_type}).to_doc()


def publish_dir(directory: Path, store: Store, *, keys: KeyStore | None = None, key_name: str | None = None,
                passphrase: str | None = None, version: int | None = None, license: str = "apache-2.0",
                expires: datetime | None = None, progress: bool = True) -> PublishResult:
    """Sign and publish the expert or router in ``directory``; returns the manifest and card CIDs.

    ``version`` defaults to 1 + the highest this key published under that name on this machine."""
    directory = Path(directory)
    schema, desc = read_description(directory)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise DataError(f"{weights} is missing; publish the directory `hddm train` wrote (model.safetensors + json)")
    check_weights(weights)  # before any byte is uploaded
    keys = keys or KeyStore()
    key = keys.load(keys.resolve_name(key_name), passphrase)
    did, slot, memory = did_from_key(key), slot_of(schema, desc["name"]), _VersionMemory()
    if version is not None and version < memory.next(did, slot):
        raise ManifestError(f"{slot} v{version} is not above v{memory.next(did, slot) - 1}, which this key already "
                            "published; versions only grow (omit --version to use the next one)")
    digest = store.add_file(weights, progress=progress)
    doc = {"schema": schema, **desc, "version": version or memory.next(did, slot),
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "expires": expires.isoformat(timespec="seconds") if expires else None, "publisher": did, "license": license,
           "artifacts": [_artifact(WEIGHTS, digest.cid, digest.sha256, digest.size, SAFETENSORS_MEDIA_TYPE)]}
    card = render_card(validate(doc)).encode()
    card_cid = store.put_bytes(card)
    if card_cid != cid_of_bytes(card):
        raise ManifestError(f"the store named the model card {card_cid}, but it hashes to {cid_of_bytes(card)}")
    doc["artifacts"].append(_artifact(CARD_NAME, card_cid, hashlib.sha256(card).hexdigest(), len(card), CARD_MEDIA_TYPE))
    signed = sign_manifest(validate(doc), key)
    cid = store.put_bytes(manifest_bytes(signed))
    for c in (digest.cid, card_cid, cid):
        store.pin(c)
    memory.remember(did, slot, signed.version)
    return PublishResult(cid, card_cid, signed)
