"""Ed25519 identities and signatures over RFC 8785 canonical JSON.

A publisher is one Ed25519 key, written three ways that all name the same 32 public bytes:

    did:key:z6Mk...   multibase base58btc of (multicodec ed25519-pub 0xed 0x01 ‖ pubkey)   — in manifests
    k51qzi5uqu5d...   CIDv1(libp2p-key, identity multihash of the libp2p PublicKey protobuf), base36 — IPNS name
    PEM PKCS8         the private key on disk, also what ``ipfs key import --format=pem-pkcs8-cleartext`` reads

A signed document is a JSON object with a ``signature`` field holding base64(Ed25519(canonical)), where
``canonical = RFC 8785 JSON of the object without its signature``. Verification canonicalises the object
*as parsed from the bytes*, so what is verified is exactly what the models then validate.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from multiformats import CID, multibase, multihash

from hddm_p2p.errors import ManifestError, SignatureError

DID_PREFIX = "did:key:z"
# Fields a signature never covers: the publisher's own, and curators' detached cosignatures (threshold.py).
UNSIGNED_FIELDS = ("signature", "signatures")
_ED25519_PUB = b"\xed\x01"  # multicodec ed25519-pub (0xed) as an unsigned varint
# libp2p PublicKey protobuf: field 1 KeyType = 1 (Ed25519), field 2 Data = 32 bytes.
_LIBP2P_ED25519_PUB = b"\x08\x01\x12\x20"


def public_bytes(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """The 32 raw public-key bytes of a key (private keys give their public half)."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def did_from_key(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """``did:key:z6Mk...`` for an Ed25519 key. Round trip: ``public_key_from_did(did_from_key(k))`` == k."""
    return "did:key:" + multibase.encode(_ED25519_PUB + public_bytes(key), "base58btc")  # 'z' + base58btc


def public_key_from_did(did: str) -> Ed25519PublicKey:
    """The Ed25519 public key a ``did:key`` names; SignatureError if it is not an Ed25519 did:key."""
    if not isinstance(did, str) or not did.startswith(DID_PREFIX):
        raise SignatureError(f"publisher {did!r} is not a did:key (expected did:key:z6Mk...)")
    try:
        raw = multibase.decode(did[len("did:key:"):])
    except (ValueError, KeyError):
        raise SignatureError(f"publisher {did!r} is not valid base58btc") from None
    if len(raw) != 34 or raw[:2] != _ED25519_PUB:
        raise SignatureError(f"publisher {did!r} is not an Ed25519 did:key (expected 34 bytes starting 0xed01)")
    return Ed25519PublicKey.from_public_bytes(raw[2:])


def ipns_name(did_or_key: str | Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The IPNS name (libp2p peer id as a base36 CIDv1, ``k51...``) of the same key Kubo would publish under."""
    key = public_key_from_did(did_or_key) if isinstance(did_or_key, str) else did_or_key
    proto = _LIBP2P_ED25519_PUB + public_bytes(key)  # 36 bytes ≤ 42, so libp2p inlines it (identity hash)
    return str(CID("base36", 1, "libp2p-key", multihash.wrap(proto, "identity")))


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 (JCS) canonical bytes; ManifestError for values JSON cannot carry exactly (NaN, huge ints)."""
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
        raise ManifestError(f"document cannot be canonicalised (RFC 8785): {e}") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ManifestError(f"duplicate key {k!r} in JSON document; refusing an ambiguous manifest")
        out[k] = v
    return out


def _int_or_float(text: str) -> int | float:
    # RFC 8785 writes a float such as 1e16 as "10000000000000000"; beyond 2^53 such digits can only have come
    # from a float (larger integers cannot be canonicalised, so they were never signed), so read them back as one.
    value = int(text)
    return value if abs(value) < 2**53 else float(value)


def parse_json(data: bytes) -> dict[str, Any]:
    """Parse a JSON object, refusing duplicate keys, NaN/Infinity and non-objects."""
    def _bad_constant(name: str):
        raise ManifestError(f"JSON constant {name} is not allowed in a manifest")

    try:
        doc = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_bad_constant, parse_int=_int_or_float)
    except RecursionError:
        raise ManifestError("JSON document is nested too deeply to be a manifest") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer beyond Python's digit limit
        raise ManifestError(f"not a JSON document: {e}") from None
    if not isinstance(doc, dict):
        raise ManifestError("a manifest must be a JSON object")
    return doc


def signed_body(doc: dict[str, Any]) -> dict[str, Any]:
    """What every signature over ``doc`` covers: the document without its signature fields."""
    return {k: v for k, v in doc.items() if k not in UNSIGNED_FIELDS}


def sign_document(doc: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Return ``doc`` with ``signature`` = base64(Ed25519 over canonical JSON of doc minus signature)."""
    body = signed_body(doc)
    return {**doc, "signature": base64.b64encode(key.sign(canonical_json(body))).decode("ascii")}


def verify_document(doc: dict[str, Any], did: str) -> None:
    """SignatureError unless ``doc['signature']`` is a valid signature of the rest of ``doc`` by ``did``."""
    sig = doc.get("signature")
    if not isinstance(sig, str) or not sig:
        raise SignatureError("manifest has no signature; sign it with `hddm publish` before sharing it")
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("manifest signature is not valid base64") from None
    body = signed_body(doc)
    try:
        public_key_from_did(did).verify(raw, canonical_json(body))
    except InvalidSignature:
        raise SignatureError(
            f"signature does not verify for publisher {did}: the manifest was changed after signing "
            "or was signed by a different key than it names") from None
