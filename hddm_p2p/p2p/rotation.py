"""Key rotation: a publisher moves to a new key with a statement signed by the key it replaces.

    statement = sign_rotation(old_key, new_did)          # hddm.rotation/1, signed by the OLD key
    cid = store.put_bytes(rotation_bytes(statement))     # shared like any manifest
    accept_rotation(store.cat(cid), TrustStore())        # the user's side

A statement is accepted only when its signature verifies for ``old`` and ``old`` is trusted now (not revoked,
not already rotated). Then ``new`` is trusted under the same name and the trust store remembers
``rotated_keys[old] = {"new", "at": created}``: manifests ``old`` signs with ``created`` at or after that moment
are refused, earlier ones stay valid. A rotation is the routine way to retire a key; a *stolen* key can
backdate ``created``, so a compromised key is revoked (catalog ``revoked_keys``), which refuses all it signed.
The first accepted rotation wins: a thief's later statement for the same old key is refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import AwareDatetime, Field, model_validator

from hddm_p2p.errors import TrustError
from hddm_p2p.p2p.manifests import validate
from hddm_p2p.p2p.manifests.common import DidKey, Signature, Strict
from hddm_p2p.p2p.signing import canonical_json, did_from_key, parse_json, sign_document, verify_document
from hddm_p2p.p2p.trust import TrustStore

ROTATION_SCHEMA = "hddm.rotation/1"
CLOCK_SKEW = timedelta(minutes=5)  # a statement dated further in the future than this is refused


class RotationStatement(Strict):
    """``hddm.rotation/1``: "from ``created`` on, ``old`` is replaced by ``new``", signed by ``old``."""

    schema_: Literal["hddm.rotation/1"] = Field(alias="schema")
    old: DidKey
    new: DidKey
    created: AwareDatetime
    signature: Signature | None = None

    @model_validator(mode="after")
    def _distinct(self):
        if self.old == self.new:
            raise ValueError("a key cannot rotate to itself")
        return self


def sign_rotation(old_key: Ed25519PrivateKey, new_did: str, *, created: datetime | None = None) -> RotationStatement:
    """A rotation statement from ``old_key`` to ``new_did``, signed by ``old_key``."""
    created = created or datetime.now(timezone.utc)
    doc = {"schema": ROTATION_SCHEMA, "old": did_from_key(old_key), "new": new_did,
           "created": created.isoformat(timespec="seconds"), "signature": None}
    return validate(sign_document(doc, old_key), RotationStatement)


def rotation_bytes(statement: RotationStatement) -> bytes:
    """The canonical bytes to store and share (RFC 8785, signature included)."""
    return canonical_json(statement.to_doc())


def accept_rotation(data: bytes, trust: TrustStore | None = None, *, now: datetime | None = None) -> RotationStatement:
    """Verify a rotation statement and adopt it; ManifestError, SignatureError or TrustError otherwise."""
    trust, now = trust or TrustStore(), now or datetime.now(timezone.utc)
    doc = parse_json(data)
    statement = validate(doc, RotationStatement)
    verify_document(doc, statement.old)  # SignatureError unless the OLD key signed it
    if statement.created > now + CLOCK_SKEW:
        raise TrustError(f"rotation of {statement.old} is dated {statement.created.isoformat()}, in the future; "
                         "check the clocks and ask for a new statement")
    trust.rotate(statement.old, statement.new, statement.created)
    return statement
