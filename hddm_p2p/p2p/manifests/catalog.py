"""The catalog manifest: a publisher's signed list of manifest CIDs, with revocations."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hddm_p2p.p2p.manifests.common import Cid, DidKey, Header, Name, Signature, Strict

CATALOG_SCHEMA = "hddm.catalog/1"


class CatalogEntry(Strict):
    """A manifest CID; ``name`` and ``kind`` are hints, checked against the manifest when it is fetched."""

    cid: Cid
    name: Name | None = None
    kind: Literal["expert", "router"] | None = None


class Cosignature(Strict):
    """A curator's detached signature over the same bytes the publisher's ``signature`` covers (threshold.py)."""

    keyid: DidKey
    sig: Signature


class CatalogManifest(Header):
    """Signed catalog, schema ``hddm.catalog/1``, published under the publisher's IPNS name."""

    schema_: Literal["hddm.catalog/1"] = Field(alias="schema")
    entries: list[CatalogEntry] = Field(default_factory=list)
    revoked_manifests: list[Cid] = Field(default_factory=list, description="manifest CIDs no one should use")
    revoked_keys: list[DidKey] = Field(default_factory=list, description="publisher keys no one should trust")
    signatures: list[Cosignature] = Field(default_factory=list, description="curators' cosignatures (k-of-n)")
