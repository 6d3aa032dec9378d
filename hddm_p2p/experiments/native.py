"""An expert's own deterministic sampler on its own schedule: DDIM with η = 0 (Song et al. 2021, eq. 12).

    x̂0, ε̂ = pivot(model(x_s, time_scale·s))             through the expert's prediction type
    x̂0 ← clamp(x̂0, −clip, clip),  ε̂ = (x_s − α_s x̂0) / σ_s   (DDPM's clip_denoised for pixels)
    x_s' = α_s' x̂0 + σ_s' ε̂                               s' < s on a uniform grid of the expert's time

This is the "native DDPM" baseline of the conversion study: no flow-linear velocity, no ensemble,
the same network. The start s = 1 takes x_1 = noise (for vp-linear α(1) ≈ 0.006, so the prior
mismatch is the usual DDPM one).
"""

from __future__ import annotations

import torch

from hddm_p2p.diffusion import ExpertSpec, to_pivot

Tensor = torch.Tensor


def _col(v: Tensor, like: Tensor) -> Tensor:
    return v.to(like.device, like.dtype).view(-1, *[1] * (like.ndim - 1)).expand(like.shape[0], *[1] * (like.ndim - 1))


@torch.no_grad()
def sample_ddim(model, spec: ExpertSpec, noise: Tensor, steps: int) -> Tensor:
    """Integrate from ``noise`` at s = 1 to a sample at s = 0 in ``steps`` model calls (DDIM, η = 0)."""
    sched = spec.sched
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    x = noise.float()
    for i in range(steps):
        s, s_next = grid[i], grid[i + 1]
        a, sg = _col(sched.alpha(s), x), _col(sched.sigma(s), x)
        t_in = torch.full((x.shape[0],), float(spec.time_scale * s), device=x.device)
        out = model(x, t_in.to(noise.dtype), None).float()
        x0, _ = to_pivot(spec.prediction, out, x, a, sg, safe_min=1e-4)
        x0 = x0.clamp(-spec.clip, spec.clip)
        if s_next == 0:
            return x0
        eps = (x - a * x0) / sg
        x = _col(sched.alpha(s_next), x) * x0 + _col(sched.sigma(s_next), x) * eps
    return x
