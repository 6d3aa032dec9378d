"""k-of-n curator signatures on a catalog, as TUF's threshold signatures.

A curated catalog is an ordinary ``hddm.catalog/1`` document whose ``signatures`` list carries detached
cosignatures ``{"keyid": did, "sig": base64}``, each over the same bytes the publisher's ``signature`` covers
(RFC 8785 of the document without ``signature`` and ``signatures``). A ``ThresholdPolicy(keys, threshold)``
names the curators that count: the catalog is accepted when at least ``threshold`` *distinct* policy keys
signed it validly (the publisher's own signature counts when the publisher is a policy key). Invalid
signatures, keys outside the policy and repeats of one key count for nothing, as in TUF.

    doc = sign_document(catalog_doc, publisher_key)
    doc = cosign(cosign(doc, curator_b), curator_c)
    cid = store.put_bytes(canonical_json(doc))
    cid, catalog = resolve_curated_catalog(store, cid, ThresholdPolicy(frozenset({a, b, c}), 2))

A catalog accepted this way needs no trusted publisher: the policy replaces ``hddm trust add`` for it, and its
revocations are adopted. Signature sets are fixed when the catalog is stored (its CID covers them), so
curators collect every cosignature before the catalog is published.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hddm_p2p.errors import HddmError, ManifestError, SpecError, TrustError
from hddm_p2p.p2p.catalog import resolve_name
from hddm_p2p.p2p.fetch import verify_bytes
from hddm_p2p.p2p.manifests import CatalogManifest
from hddm_p2p.p2p.signing import canonical_json, did_from_key, ipns_name, parse_json, public_key_from_did, signed_body
from hddm_p2p.p2p.store.base import Store
from hddm_p2p.p2p.trust import TrustStore


@dataclass(frozen=True)
class ThresholdPolicy:
    """``threshold`` of the curator ``keys`` (did:key strings) must sign; 1 ≤ threshold ≤ len(keys)."""

    keys: frozenset[str]
    threshold: int

    def __post_init__(self):
        for did in self.keys:
            public_key_from_did(did)  # SignatureError for anything but an Ed25519 did:key
        if not 1 <= self.threshold <= len(self.keys):
            raise SpecError(f"threshold {self.threshold} is not between 1 and the {len(self.keys)} curator keys")


def cosign(doc: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """``doc`` with this key's cosignature added (replacing an earlier one by the same key)."""
    did = did_from_key(key)
    sig = base64.b64encode(key.sign(canonical_json(signed_body(doc)))).decode("ascii")
    others = [s for s in doc.get("signatures", []) if s.get("keyid") != did]
    return {**doc, "signatures": [*others, {"keyid": did, "sig": sig}]}


def _verifies(did: Any, sig: Any, body: bytes) -> bool:
    try:
        public_key_from_did(did).verify(base64.b64decode(sig, validate=True), body)
        return True
    except (InvalidSignature, HddmError, binascii.Error, ValueError, TypeError):
        return False


def valid_signers(doc: dict[str, Any], policy: ThresholdPolicy) -> set[str]:
    """The distinct policy keys with a valid signature on ``doc`` (publisher's signature included)."""
    body = canonical_json(signed_body(doc))
    sigs = doc.get("signatures") or []
    if not isinstance(sigs, list):
        raise ManifestError("'signatures' must be a list of {keyid, sig}")
    candidates = [(doc.get("publisher"), doc.get("signature"))]
    candidates += [(s.get("keyid"), s.get("sig")) for s in sigs if isinstance(s, dict)]
    return {did for did, sig in candidates
            if isinstance(did, str) and did in policy.keys and _verifies(did, sig, body)}


def check_threshold(doc: dict[str, Any], policy: ThresholdPolicy) -> set[str]:
    """The signers, or TrustError when fewer than ``policy.threshold`` distinct curators signed."""
    signers = valid_signers(doc, policy)
    if len(signers) < policy.threshold:
        raise TrustError(f"catalog {doc.get('name')!r} has {len(signers)} valid curator signature(s), the policy "
                         f"needs {policy.threshold} of {len(policy.keys)}; ask more curators to cosign it")
    return signers


def resolve_curated_catalog(store: Store, ref: str, policy: ThresholdPolicy, trust: TrustStore | None = None, *,
                            allow_downgrade: bool = False) -> tuple[str, CatalogManifest]:
    """Resolve, fetch and verify a catalog that ``policy``'s curators must have signed; adopts its revocations.

    The publisher's signature must verify, then the threshold, then revocation, expiry and rollback checks."""
    trust = trust or TrustStore()
    cid, name = resolve_name(store, ref)
    data = store.cat(cid)
    cid, m = verify_bytes(data, trust, cid=cid, allow_untrusted=True, allow_downgrade=allow_downgrade)
    if not isinstance(m, CatalogManifest):
        raise ManifestError(f"{cid} is a {m.schema_} document, not a catalog")
    if name is not None and ipns_name(m.publisher) != name:
        raise TrustError(f"the catalog under {name} is signed by {m.publisher}, whose IPNS name differs; refusing it")
    check_threshold(parse_json(data), policy)
    trust.record(m, cid)
    trust.apply_revocations(m, endorsed=True)
    return cid, m
