"""Pieces every manifest shares: strict config, identifiers, artifacts with their import parameters, signed headers.

All models are strict (unknown fields rejected, no type coercion), frozen, and validated from JSON
(``Model.model_validate_json``), so a manifest means exactly what its bytes say.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False, populate_by_name=False)

# CIDv1 in base32 (what Kubo prints for CIDv1 and what hddm computes locally).
Cid = Annotated[str, Field(pattern=r"^b[a-z2-7]{20,}$", description="CIDv1, base32 multibase")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="lowercase hex sha256")]
DidKey = Annotated[str, Field(pattern=r"^did:key:z6Mk[1-9A-HJ-NP-Za-km-z]{40,50}$",
                              description="Ed25519 did:key (multicodec 0xed, base58btc)")]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="no directories")]
Signature = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{86}==$", description="base64 Ed25519 signature")]


def slot_of(schema: str, name: str) -> str:
    """``kind/name`` (e.g. ``expert/cifar-fm-c0``): what version numbers count up within, per publisher."""
    return f"{schema.split('/')[0].removeprefix('hddm.')}/{name}"


class Strict(BaseModel):
    model_config = STRICT

    def to_doc(self) -> dict[str, Any]:
        """The JSON document (aliases applied: ``import``), the form that is signed and stored."""
        return self.model_dump(mode="json", by_alias=True)


class ImportParams(Strict):
    """How the artifact's bytes were chunked into a UnixFS DAG: Kubo's ``unixfs-v1-2025`` profile, pinned."""

    cid_version: Literal[1] = 1
    raw_leaves: Literal[True] = True
    chunker: Literal["size-1048576"] = "size-1048576"
    layout: Literal["balanced"] = "balanced"
    links_per_node: Literal[1024] = 1024
    hash: Literal["sha2-256"] = "sha2-256"
    profile: Literal["unixfs-v1-2025"] = "unixfs-v1-2025"


class Artifact(Strict):
    """One file a manifest covers; ``cid``, ``sha256`` and ``size`` are all checked before the file is used."""

    name: FileName
    cid: Cid
    sha256: Sha256
    size: int = Field(ge=0)
    media_type: str = Field(min_length=1, max_length=128)
    import_: ImportParams = Field(default_factory=ImportParams, alias="import")


class Header(Strict):
    """Identity and freshness fields of every signed manifest."""

    schema_: str = Field(alias="schema")
    name: Name
    version: int = Field(ge=1, description="only grows per (publisher, name)")
    created: AwareDatetime
    expires: AwareDatetime | None = None
    publisher: DidKey
    signature: Signature | None = None

    @property
    def slot(self) -> str:
        return slot_of(self.schema_, self.name)

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires


class Published(Header):
    """A signed manifest that covers files (expert, router)."""

    license: str = Field(min_length=1, max_length=64, description="SPDX id, e.g. apache-2.0")
    artifacts: list[Artifact] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self):
        names = [a.name for a in self.artifacts]
        if len(set(names)) != len(names):
            raise ValueError(f"artifact names must be unique, got {names}")
        if "manifest.json" in names:
            raise ValueError("'manifest.json' is reserved for the manifest itself")
        return self

    def artifact(self, name: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.name == name), None)
