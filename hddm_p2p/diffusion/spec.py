"""``ExpertSpec``: everything the ensemble needs to turn one expert's output into shared velocity."""

from __future__ import annotations

from dataclasses import dataclass, field

from hddm_p2p.diffusion.prediction import Prediction
from hddm_p2p.diffusion.schedules import Schedule, get_schedule
from hddm_p2p.errors import SpecError


@dataclass(frozen=True)
class ExpertSpec:
    """How to query an expert and read its output.

    An expert model is any callable ``model(x_s, time_scale * s, cond)`` where ``s`` is the expert's
    own schedule time; ``time_scale=999`` suits experts initialised from DiT ImageNet checkpoints,
    which expect discrete timesteps. ``clip`` bounds |x̂0| when safeguards are on (the paper uses 20
    for VAE latents; pixel experts declare 1).

    Invariants: ``prediction`` is a ``Prediction``; ``schedule`` names a registered schedule;
    ``time_scale`` and ``clip`` are positive. Invalid values raise ``SpecError`` here, at construction.
    """

    prediction: Prediction
    schedule: str
    time_scale: float = 1.0
    clip: float = 20.0
    _schedule: Schedule = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "prediction", Prediction.parse(self.prediction))
        object.__setattr__(self, "_schedule", get_schedule(self.schedule))
        object.__setattr__(self, "schedule", self._schedule.name)
        if not self.time_scale > 0:
            raise SpecError(f"time_scale must be positive, got {self.time_scale}")
        if not self.clip > 0:
            raise SpecError(f"clip must be positive, got {self.clip}")

    @property
    def sched(self) -> Schedule:
        return self._schedule

    @property
    def native(self) -> bool:
        """True when the output already is the ensemble's flow-linear velocity (no conversion)."""
        return self.prediction is Prediction.VELOCITY and self.schedule == "flow-linear"
