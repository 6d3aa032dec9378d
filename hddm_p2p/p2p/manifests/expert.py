"""The expert manifest: everything a stranger needs to turn an expert's output into the shared velocity.

Its description fields are exactly those of an expert directory's ``expert.json`` (docs/contracts.md), less
``kind`` (the ``schema`` id says it), plus the signed header and the artifacts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from hddm_p2p.diffusion import SCHEDULES, Prediction
from hddm_p2p.p2p.manifests.common import Name, Published, Sha256, Strict

EXPERT_SCHEMA = "hddm.expert/1"
# Training objective → the prediction type the network outputs (contracts.md, "Objectives").
OBJECTIVE_PREDICTION = {"ddpm": "epsilon", "fm": "velocity", "x0": "x0", "v": "v"}


def check_schedule(name: str) -> str:
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(sorted(SCHEDULES))}")
    return name


class Architecture(Strict):
    family: str = Field(min_length=1)
    preset: str | None = None
    config: dict[str, Any] = Field(description="full model config, enough to rebuild the network")


class Vae(Strict):
    id: str = Field(min_length=1, description="e.g. stabilityai/sd-vae-ft-mse")
    scaling_factor: float = Field(gt=0)
    image_resolution: int = Field(gt=0)


class DataSpace(Strict):
    kind: Literal["pixel", "latent"]
    resolution: int = Field(gt=0)
    channels: int = Field(gt=0)
    value_range: tuple[float, float]
    vae: Vae | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.value_range[0] >= self.value_range[1]:
            raise ValueError(f"value_range must be [low, high] with low < high, got {list(self.value_range)}")
        if (self.kind == "latent") != (self.vae is not None):
            raise ValueError("a latent data space needs a vae, a pixel data space must have vae: null")
        return self


class TextEncoder(Strict):
    id: str = Field(min_length=1)
    width: int = Field(gt=0)
    max_tokens: int = Field(gt=0)


class Conditioning(Strict):
    kind: Literal["none", "class", "text"]
    num_classes: int | None = Field(default=None, gt=0)
    class_names: list[str] | None = None
    text_encoder: TextEncoder | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if (self.kind == "class") != (self.num_classes is not None):
            raise ValueError("num_classes is required for class conditioning and must be null otherwise")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names for {self.num_classes} classes")
        if (self.kind == "text") != (self.text_encoder is not None):
            raise ValueError("text_encoder is required for text conditioning and must be null otherwise")
        return self


class Cluster(Strict):
    id: int = Field(ge=0)
    feature_extractor: str = Field(min_length=1)
    feature_dim: int = Field(gt=0)
    centroid: list[float]
    size: int = Field(ge=0)
    assignments_sha256: Sha256 | None = None

    @model_validator(mode="after")
    def _centroid_width(self):
        if len(self.centroid) != self.feature_dim:
            raise ValueError(f"centroid has {len(self.centroid)} values but feature_dim is {self.feature_dim}")
        return self


class Training(Strict):
    steps: int = Field(ge=0)
    batch_size: int = Field(gt=0)
    seed: int
    final_loss: float | None = None
    images_seen: int = Field(ge=0)
    wall_time_s: float = Field(ge=0)
    device: str
    dataset: str


class ExpertDescription(Strict):
    """The fields of ``expert.json`` shared with the manifest (everything but ``kind``)."""

    name: Name
    objective: Literal["ddpm", "fm", "x0", "v"]
    prediction: str
    schedule: str
    time_scale: float = Field(gt=0)
    architecture: Architecture
    data_space: DataSpace
    conditioning: Conditioning
    cluster: Cluster | None = None
    training: Training

    @field_validator("prediction")
    @classmethod
    def _prediction(cls, v: str) -> str:
        return Prediction.parse(v).value  # SpecError is a ValueError: pydantic reports it on the field

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        return check_schedule(v)

    @model_validator(mode="after")
    def _objective_matches(self):
        want = OBJECTIVE_PREDICTION[self.objective]
        if self.prediction != want:
            raise ValueError(f"objective {self.objective!r} trains prediction {want!r}, not {self.prediction!r}")
        return self


class ExpertManifest(Published, ExpertDescription):
    """Signed expert manifest, schema ``hddm.expert/1``."""

    schema_: Literal["hddm.expert/1"] = Field(alias="schema")
