"""The ensemble lock file written by ``assemble``: pins every manifest, artifact and the router.

Not signed (it is local state, like a package lock file), but every CID and sha256 in it is checked again
when the ensemble is loaded.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, Field, model_validator

from hddm_p2p.p2p.manifests.common import Cid, DidKey, FileName, Name, Sha256, Strict

LOCK_SCHEMA = "hddm.lock/1"


class LockArtifact(Strict):
    name: FileName
    cid: Cid
    sha256: Sha256
    size: int = Field(ge=0)


class LockMember(Strict):
    """One pinned manifest: ``role`` is e.g. ``expert``; order of members is the ensemble's expert order."""

    role: str = Field(min_length=1)
    manifest_cid: Cid
    name: Name
    publisher: DidKey
    artifacts: list[LockArtifact]


class LockRouter(Strict):
    """``uniform``/``threshold``: no weights, ``params`` say how; ``cid``: a router manifest; ``local``: a dir."""

    kind: Literal["uniform", "threshold", "cid", "local"]
    params: dict[str, Any] = Field(default_factory=dict)
    manifest_cid: Cid | None = None
    sha256: Sha256 | None = Field(default=None, description="sha256 of a local router's model.safetensors")

    @model_validator(mode="after")
    def _pinned(self):
        if self.kind == "cid" and self.manifest_cid is None:
            raise ValueError("a router of kind 'cid' needs manifest_cid")
        if self.kind == "local" and self.sha256 is None:
            raise ValueError("a router of kind 'local' needs the sha256 of its weights")
        return self


class EnsembleLock(Strict):
    """``hddm.lock/1``: what an ensemble is made of, pinned by content."""

    schema_: Literal["hddm.lock/1"] = Field(alias="schema")
    name: Name | None = None
    created: AwareDatetime
    members: list[LockMember] = Field(min_length=1)
    router: LockRouter
