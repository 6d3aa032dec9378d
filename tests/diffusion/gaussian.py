"""An exact denoiser for Gaussian data x0 ~ N(m, v·I): E[x0 | x_s] in closed form, as any prediction type."""

import torch

from hddm_p2p.diffusion import ExpertSpec, from_pivot


def posterior(x_s, alpha, sigma, m, v):
    """E[x0 | x_s] and E[ε | x_s] for x_s = α·x0 + σ·ε."""
    x0 = m + alpha * v / (alpha**2 * v + sigma**2) * (x_s - alpha * m)
    return x0, (x_s - alpha * x0) / sigma


class GaussianExpert:
    """Callable expert ``model(x_s, time_scale*s, cond)`` that predicts exactly; counts its calls."""

    def __init__(self, spec: ExpertSpec, m: float, v: float):
        self.spec, self.m, self.v = spec, m, v
        self.calls: list[int] = []

    def __call__(self, x_s, t_scaled, cond=None):
        self.calls.append(x_s.shape[0])
        s = (t_scaled.to(torch.float64) / self.spec.time_scale).view(-1, *[1] * (x_s.ndim - 1))
        a, sg = self.spec.sched.alpha(s), self.spec.sched.sigma(s)
        x0, eps = posterior(x_s.to(torch.float64), a, sg, self.m, self.v)
        return from_pivot(self.spec.prediction, x0, eps, a, sg).to(x_s.dtype)


def true_velocity(x_t, t, m, v):
    """E[ε − x0 | x_t] on the flow-linear path."""
    t = torch.as_tensor(t, dtype=torch.float64).view(-1, *[1] * (x_t.ndim - 1))
    x0, eps = posterior(x_t, 1 - t, t, m, v)
    return eps - x0
