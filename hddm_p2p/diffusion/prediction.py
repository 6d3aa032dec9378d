"""What a network predicts, and exact conversions between predictions through one pivot.

With x_s = α·x0 + σ·ε, every prediction type is a linear function of the pivot (x0, ε):

    epsilon   ε
    velocity  ε − x0              (flow-matching velocity; d x_s / ds on the flow-linear path)
    x0        x0
    v         α·ε − σ·x0          (Salimans & Ho 2022)

``to_pivot`` inverts each map given x_s; ``from_pivot`` applies it. Any conversion is
``from_pivot(dst, *to_pivot(src, ...))``. ``safe_min`` clamps the divisor where the inversion divides by
α or σ (the paper's α_safe = max(α, 0.01)); with ``safe_min=0`` the conversions are exact.
"""

from __future__ import annotations

from enum import Enum

import torch

from hddm_p2p.choices import parse_choice

Tensor = torch.Tensor


class Prediction(str, Enum):
    EPSILON = "epsilon"
    VELOCITY = "velocity"
    X0 = "x0"
    V = "v"

    @classmethod
    def parse(cls, value: "str | Prediction") -> "Prediction":
        return parse_choice(cls, value, "prediction type")


def _safe(d: Tensor, safe_min: float) -> Tensor:
    return d.clamp(min=safe_min) if safe_min > 0 else d


def _from_epsilon(out, x, a, s, m):
    return (x - s * out) / _safe(a, m), out


def _from_x0(out, x, a, s, m):
    return out, (x - a * out) / _safe(s, m)


def _from_velocity(out, x, a, s, m):
    x0 = (x - s * out) / _safe(a + s, m)  # x = (α+σ)·x0 + σ·(ε − x0)
    return x0, out + x0


def _from_v(out, x, a, s, m):
    n = _safe(a * a + s * s, m)  # = 1 on variance-preserving schedules
    return (a * x - s * out) / n, (s * x + a * out) / n


_TO_PIVOT = {
    Prediction.EPSILON: _from_epsilon,
    Prediction.X0: _from_x0,
    Prediction.VELOCITY: _from_velocity,
    Prediction.V: _from_v,
}

_FROM_PIVOT = {
    Prediction.EPSILON: lambda x0, eps, a, s: eps,
    Prediction.X0: lambda x0, eps, a, s: x0,
    Prediction.VELOCITY: lambda x0, eps, a, s: eps - x0,
    Prediction.V: lambda x0, eps, a, s: a * eps - s * x0,
}


def to_pivot(pred: Prediction, out: Tensor, x_s: Tensor, alpha: Tensor, sigma: Tensor, safe_min: float = 0.0):
    """(x̂0, ε̂) implied by a network output ``out`` of type ``pred`` at x_s."""
    return _TO_PIVOT[Prediction.parse(pred)](out, x_s, alpha, sigma, safe_min)


def from_pivot(pred: Prediction, x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """The quantity of type ``pred`` for clean sample x0 and noise ε; also the training target."""
    return _FROM_PIVOT[Prediction.parse(pred)](x0, eps, alpha, sigma)


def convert(out: Tensor, src: Prediction, dst: Prediction, x_s: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Exact conversion of a prediction from type ``src`` to type ``dst`` at the same x_s."""
    return from_pivot(dst, *to_pivot(src, out, x_s, alpha, sigma), alpha, sigma)
