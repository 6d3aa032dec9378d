"""Training objectives: one MSE loss for every (prediction type, schedule) pair, through the core.

For clean x0, noise ε ~ N(0, I) and time s ~ p(s) on the expert's schedule:

    x_s = α(s)·x0 + σ(s)·ε,   target = from_pivot(prediction, x0, ε, α, σ),
    loss = E ‖model(x_s, time_scale·s, cond) − target‖²

``ddpm`` predicts ε, ``fm`` the velocity ε − x0, ``x0`` the clean sample, ``v`` α·ε − σ·x0; any of them on
``flow-linear``, ``vp-cosine`` or ``vp-linear``. p(s) is uniform on [0, 1] or logit-normal (SD3:
s = sigmoid(m + std·n), n ~ N(0, 1)). All randomness comes from one ``torch.Generator`` so that a resumed
run draws the same noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F

from hddm_p2p.diffusion import Prediction, from_pivot, get_schedule
from hddm_p2p.choices import parse_choice
from hddm_p2p.errors import SpecError

Tensor = torch.Tensor


class Objective(str, Enum):
    DDPM = "ddpm"
    FM = "fm"
    X0 = "x0"
    V = "v"

    @classmethod
    def parse(cls, value: "str | Objective") -> "Objective":
        return parse_choice(cls, value, "objective")

    @property
    def prediction(self) -> Prediction:
        return _PREDICTION[self]


_PREDICTION = {Objective.DDPM: Prediction.EPSILON, Objective.FM: Prediction.VELOCITY,
               Objective.X0: Prediction.X0, Objective.V: Prediction.V}
TIME_SAMPLING = ("uniform", "logit-normal")


@dataclass(frozen=True)
class ObjectiveConfig:
    """What the expert learns and how its training times are drawn."""

    objective: str = "fm"
    schedule: str = "flow-linear"
    time_sampling: str = "uniform"
    logit_mean: float = 0.0          # logit-normal location (SD3 uses 0)
    logit_std: float = 1.0           # logit-normal scale
    time_scale: float = 1000.0       # model sees t = time_scale·s (recorded in expert.json)
    cond_dropout: float = 0.1        # label/caption dropout for classifier-free guidance

    def __post_init__(self):
        object.__setattr__(self, "objective", Objective.parse(self.objective).value)
        get_schedule(self.schedule)  # raises SpecError listing valid names
        if self.time_sampling not in TIME_SAMPLING:
            raise SpecError(f"unknown time sampling {self.time_sampling!r}; choose one of: {', '.join(TIME_SAMPLING)}")
        if not 0 <= self.cond_dropout < 1:
            raise SpecError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if not self.time_scale > 0:
            raise SpecError(f"time_scale must be positive, got {self.time_scale}")

    @property
    def prediction(self) -> Prediction:
        return Objective(self.objective).prediction


def sample_time(n: int, cfg: ObjectiveConfig, gen: torch.Generator, device) -> Tensor:
    """(n,) training times s in [0, 1], float32."""
    if cfg.time_sampling == "uniform":
        return torch.rand(n, generator=gen, device=device)
    z = torch.randn(n, generator=gen, device=device)
    return torch.sigmoid(cfg.logit_mean + cfg.logit_std * z)


def _col(v: Tensor, ndim: int) -> Tensor:
    return v.reshape(-1, *[1] * (ndim - 1))


def _rows(cond, part: slice):
    """Rows ``part`` of a condition: None, (B,) labels, or {"tokens": (B, L, D), "mask": (B, L)}."""
    if cond is None:
        return None
    return {k: v[part] for k, v in cond.items()} if isinstance(cond, dict) else cond[part]


def diffusion_loss(model, x0: Tensor, cond, cfg: ObjectiveConfig, gen: torch.Generator,
                   part: slice | None = None) -> Tensor:
    """Mean-squared error of ``model`` against the objective's target on a batch x0 (B, C, H, W).

    ``cond`` is None (unconditional) or the batch's labels / text tokens; with ``cfg.cond_dropout`` a
    sample's condition is replaced by the model's learned null with that probability. With ``part``,
    the random draws are made for all B rows (same generator stream as one process) and the model runs
    on rows ``part`` only (one rank's share under DDP, ``hddm_p2p.train.distributed``).
    """
    B, device = x0.shape[0], x0.device
    s = sample_time(B, cfg, gen, device)  # (B,)
    eps = torch.randn(x0.shape, generator=gen, device=device, dtype=x0.dtype)
    sched = get_schedule(cfg.schedule)
    a, sg = _col(sched.alpha(s).to(x0.dtype), x0.ndim), _col(sched.sigma(s).to(x0.dtype), x0.ndim)
    x_s = a * x0 + sg * eps
    target = from_pivot(cfg.prediction, x0, eps, a, sg)
    drop = torch.rand(B, generator=gen, device=device) < cfg.cond_dropout  # drawn always: same RNG stream
    if part is not None:
        x_s, s, target, drop, cond = x_s[part], s[part], target[part], drop[part], _rows(cond, part)
    if cond is None:
        out = model(x_s, cfg.time_scale * s, None)
    else:
        out = model(x_s, cfg.time_scale * s, cond, drop=drop)
    return F.mse_loss(out.float(), target.float())
