"""The router manifest: a trained router whose logits column j belongs to ``experts[j]``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from hddm_p2p.p2p.manifests.common import Name, Published, Strict
from hddm_p2p.p2p.manifests.expert import Architecture, DataSpace, check_schedule

ROUTER_SCHEMA = "hddm.router/1"
# An expert's identity: its manifest CID, else "sha256:<hex of model.safetensors>" (contracts.md).
ExpertId = Annotated[str, Field(pattern=r"^(b[a-z2-7]{20,}|sha256:[0-9a-f]{64})$")]


class RouterDescription(Strict):
    """The fields of ``router.json`` shared with the manifest (everything but ``kind``)."""

    name: Name
    architecture: Architecture
    experts: list[ExpertId] = Field(min_length=1, description="logits column j belongs to experts[j]")
    data_space: DataSpace
    path: str = Field(description="schedule of the noising path the router was trained on")
    feature_extractor: str = Field(min_length=1)
    training: dict[str, Any]
    accuracy_by_t: list[tuple[float, float]] = Field(default_factory=list)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return check_schedule(v)

    @model_validator(mode="after")
    def _unique_experts(self):
        if len(set(self.experts)) != len(self.experts):
            raise ValueError("experts must be distinct: each logits column names one expert")
        return self


class RouterManifest(Published, RouterDescription):
    """Signed router manifest, schema ``hddm.router/1``."""

    schema_: Literal["hddm.router/1"] = Field(alias="schema")
