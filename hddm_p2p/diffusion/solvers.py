"""Stateless ODE solvers for dx/dt = u(x, t) on the flow path, integrated from t = 1 to t = 0."""

from __future__ import annotations

from typing import Callable

import torch

Tensor = torch.Tensor
VelocityFn = Callable[[Tensor, Tensor, int], Tensor]  # (x_t, t, step) -> u


def time_grid(steps: int, shift: float = 1.0, device=None) -> Tensor:
    """steps+1 times from 1 to 0; ``shift`` > 1 spends more steps at high noise (SD3's time shift)."""
    t = torch.linspace(1.0, 0.0, steps + 1, device=device, dtype=torch.float64)
    return shift * t / (1 + (shift - 1) * t)


@torch.no_grad()
def sample_euler(u: VelocityFn, x: Tensor, ts: Tensor) -> Tensor:
    """Euler's method: x_{t−Δt} = x_t − u(x_t, t)·Δt."""
    for i in range(len(ts) - 1):
        x = x + (ts[i + 1] - ts[i]).item() * u(x, ts[i], i)
    return x


@torch.no_grad()
def sample_heun(u: VelocityFn, x: Tensor, ts: Tensor) -> Tensor:
    """Heun's second-order method (Karras et al. 2022, Alg. 1); Euler on the last step to t = 0."""
    for i in range(len(ts) - 1):
        dt = (ts[i + 1] - ts[i]).item()
        d = u(x, ts[i], i)
        x_euler = x + dt * d
        if ts[i + 1] == 0:
            x = x_euler
        else:
            x = x + dt * 0.5 * (d + u(x_euler, ts[i + 1], i))
    return x


SOLVERS = {"euler": sample_euler, "heun": sample_heun}
