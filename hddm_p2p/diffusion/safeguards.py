"""The paper's three numerical safeguards for converted (non-native) experts.

1. ``clamp_x0``: clamp x̂0 to ±clip (20 for VAE latents, or the value range an expert declares).
2. ``alpha_min``: α_safe = max(α, 0.01) wherever the conversion divides by α (or σ).
3. ``velocity_scaling``: adaptive velocity scaling at high noise. A true flow velocity u = ε − x0
   has per-sample RMS at most rms(ε) + rms(x0) ≤ rms(ε̂) + clip. Where the conversion amplifies
   errors (σ > α, the high-noise half of the path, where x̂0 = (x − σε̂)/α multiplies the error
   in ε̂ by σ/α), a converted velocity whose RMS exceeds that bound is scaled down onto it. A
   plausible prediction is left untouched; the scaling has no learned parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class Safeguards:
    clamp_x0: bool = True
    alpha_min: float = 0.01
    velocity_scaling: bool = True

    @classmethod
    def parse(cls, value: "bool | Safeguards") -> "Safeguards":
        if isinstance(value, Safeguards):
            return value
        return cls() if value else cls(clamp_x0=False, alpha_min=0.0, velocity_scaling=False)


def _rms(x: Tensor) -> Tensor:
    return x.flatten(1).pow(2).mean(1).sqrt()  # (B,)


def scale_velocity(u: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor, clip: float) -> Tensor:
    """Safeguard 3: shrink implausibly large converted velocities where σ > α (see module doc)."""
    bound = _rms(eps) + clip  # (B,)
    factor = (bound / _rms(u).clamp(min=1e-12)).clamp(max=1.0)
    high_noise = (sigma.flatten() > alpha.flatten()).to(u.dtype)
    factor = 1 + high_noise * (factor - 1)  # only at high noise
    return u * factor.view(-1, *[1] * (u.ndim - 1))
