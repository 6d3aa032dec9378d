"""Manifests: strict, versioned, signed JSON documents — the only contract between strangers.

    doc  = parse_json(bytes)                 # a JSON object, duplicate keys refused
    m    = validate(doc)                     # schema id → model (hddm.expert/1, hddm.router/1, ...)
    signed = sign_manifest(unsigned, key)    # signature over RFC 8785 JSON without `signature`
    verify_signature(signed.to_doc())        # SignatureError unless `publisher` signed exactly these bytes

The manifest CID is the CID of the canonical bytes (``manifest_bytes``) that ``publish`` stores.
"""

from __future__ import annotations

import json
from typing import Any, Union

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ValidationError

from hddm_p2p.errors import ManifestError
from hddm_p2p.p2p.manifests.catalog import CATALOG_SCHEMA, CatalogEntry, CatalogManifest
from hddm_p2p.p2p.manifests.common import Artifact, Header, ImportParams, Published
from hddm_p2p.p2p.manifests.expert import EXPERT_SCHEMA, ExpertDescription, ExpertManifest
from hddm_p2p.p2p.manifests.lock import LOCK_SCHEMA, EnsembleLock, LockArtifact, LockMember, LockRouter
from hddm_p2p.p2p.manifests.router import ROUTER_SCHEMA, RouterDescription, RouterManifest
from hddm_p2p.p2p.signing import canonical_json, parse_json, sign_document, verify_document

Manifest = Union[ExpertManifest, RouterManifest, CatalogManifest]
SCHEMAS: dict[str, type[BaseModel]] = {
    EXPERT_SCHEMA: ExpertManifest,
    ROUTER_SCHEMA: RouterManifest,
    CATALOG_SCHEMA: CatalogManifest,
    LOCK_SCHEMA: EnsembleLock,
}


def _one_line(e: ValidationError, what: str) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(document)"
    msg = err["msg"].replace("Value error, ", "")
    if err["type"] == "extra_forbidden":
        msg = "unknown field (not in the schema)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    more = f" (and {e.error_count() - 1} more problems)" if e.error_count() > 1 else ""
    return f"invalid {what}: {loc}: {msg}{more}"


def model_for(doc: dict[str, Any]) -> type[BaseModel]:
    """The model class for ``doc['schema']``; ManifestError naming an unknown or missing schema id."""
    schema = doc.get("schema")
    if not isinstance(schema, str) or schema not in SCHEMAS:  # a list or object here is unhashable
        if not isinstance(schema, str):
            raise ManifestError("document has no 'schema' field; it is not an hddm manifest")
        known = ", ".join(sorted(SCHEMAS))
        raise ManifestError(f"unknown manifest schema {schema!r}; this hddm-p2p understands {known} "
                            "(upgrade hddm-p2p if the publisher uses a newer one)")
    return SCHEMAS[schema]


def validate(doc: dict[str, Any], model: type[BaseModel] | None = None) -> Any:
    """Validate a parsed JSON document against its schema (strict JSON mode); ManifestError in one line."""
    cls = model or model_for(doc)
    try:
        return cls.model_validate_json(json.dumps(doc))
    except ValidationError as e:
        raise ManifestError(_one_line(e, f"{doc.get('schema', cls.__name__)} manifest")) from None


def load_bytes(data: bytes) -> Any:
    """Parse + validate (no signature check): for inspecting; use ``verify`` before trusting."""
    return validate(parse_json(data))


def manifest_bytes(manifest: BaseModel) -> bytes:
    """The canonical bytes stored and addressed by CID (RFC 8785, signature included)."""
    return canonical_json(manifest.to_doc())


def sign_manifest(manifest: Header, key: Ed25519PrivateKey) -> Header:
    """The same manifest with ``signature`` set; ManifestError if ``publisher`` is not this key."""
    from hddm_p2p.p2p.signing import did_from_key

    if manifest.publisher != did_from_key(key):
        raise ManifestError(f"manifest names publisher {manifest.publisher} but is being signed by {did_from_key(key)}")
    return validate(sign_document(manifest.to_doc(), key), type(manifest))


def verify_signature(doc: dict[str, Any]) -> Any:
    """Validate ``doc`` and check its signature against its own ``publisher``; returns the model."""
    m = validate(doc)
    if not isinstance(m, Header):
        raise ManifestError(f"{doc.get('schema')} documents are not signed")
    verify_document(doc, m.publisher)
    return m


__all__ = [
    "Artifact", "CatalogEntry", "CatalogManifest", "EnsembleLock", "ExpertDescription", "ExpertManifest", "Header",
    "ImportParams", "LockArtifact", "LockMember", "LockRouter", "Manifest", "Published", "RouterDescription",
    "RouterManifest", "SCHEMAS", "load_bytes", "manifest_bytes", "model_for", "sign_manifest", "validate",
    "verify_signature", "EXPERT_SCHEMA", "ROUTER_SCHEMA", "CATALOG_SCHEMA", "LOCK_SCHEMA",
]
