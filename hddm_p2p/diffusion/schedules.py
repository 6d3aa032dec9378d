"""Noise schedules: x_s = α(s)·x0 + σ(s)·ε with s ∈ [0, 1], s = 1 pure noise.

Every schedule is a small class with closed-form α, σ, their derivatives in s, the log
signal-to-noise ratio λ(s) = log(α²/σ²) and its inverse. Callers only see the ``Schedule``
interface and look families up by name in ``SCHEDULES``; a new family (EDM/VE, shifted flows)
is one subclass plus ``register_schedule``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from hddm_p2p.errors import SpecError

Tensor = torch.Tensor


def _as_tensor(s) -> Tensor:
    return s if isinstance(s, Tensor) else torch.as_tensor(s, dtype=torch.float64)


class Schedule(ABC):
    """α(s), σ(s) and log-SNR λ(s) of one noise-schedule family."""

    name: str

    @abstractmethod
    def alpha(self, s: Tensor) -> Tensor: ...

    @abstractmethod
    def sigma(self, s: Tensor) -> Tensor: ...

    @abstractmethod
    def d_alpha(self, s: Tensor) -> Tensor:
        """dα/ds."""

    @abstractmethod
    def d_sigma(self, s: Tensor) -> Tensor:
        """dσ/ds."""

    @abstractmethod
    def log_snr(self, s: Tensor) -> Tensor:
        """λ(s) = log(α(s)² / σ(s)²), decreasing in s."""

    @abstractmethod
    def s_from_log_snr(self, lam: Tensor) -> Tensor:
        """Inverse of ``log_snr``, clamped to [0, 1] where λ leaves the schedule's range."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FlowLinear(Schedule):
    """Rectified-flow path: α = 1 − s, σ = s."""

    name = "flow-linear"

    def alpha(self, s):
        return 1 - _as_tensor(s)

    def sigma(self, s):
        return _as_tensor(s) * 1

    def d_alpha(self, s):
        return -torch.ones_like(_as_tensor(s))

    def d_sigma(self, s):
        return torch.ones_like(_as_tensor(s))

    def log_snr(self, s):
        s = _as_tensor(s)
        return 2 * (torch.log1p(-s) - torch.log(s))

    def s_from_log_snr(self, lam):
        return torch.sigmoid(-_as_tensor(lam) / 2)  # α/σ = e^{λ/2} ⇒ s = 1 / (1 + e^{λ/2})


class VPCosine(Schedule):
    """Variance-preserving cosine schedule: α = cos(πs/2), σ = sin(πs/2)."""

    name = "vp-cosine"

    def alpha(self, s):
        return torch.cos(math.pi / 2 * _as_tensor(s))

    def sigma(self, s):
        return torch.sin(math.pi / 2 * _as_tensor(s))

    def d_alpha(self, s):
        return -math.pi / 2 * torch.sin(math.pi / 2 * _as_tensor(s))

    def d_sigma(self, s):
        return math.pi / 2 * torch.cos(math.pi / 2 * _as_tensor(s))

    def log_snr(self, s):
        return -2 * torch.log(torch.tan(math.pi / 2 * _as_tensor(s)))

    def s_from_log_snr(self, lam):
        return 2 / math.pi * torch.atan(torch.exp(-_as_tensor(lam) / 2))


class VPLinear(Schedule):
    """DDPM's discrete schedule (Ho et al. 2020): β linear from 1e-4 to 0.02 over 1000 steps.

    Table index i = 999·s; λ is interpolated linearly between table points, and α, σ follow from
    λ on the variance-preserving circle (α² = sigmoid(λ), σ² = sigmoid(−λ)).
    """

    name = "vp-linear"

    def __init__(self, beta_start: float = 1e-4, beta_end: float = 0.02, steps: int = 1000):
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
        abar = torch.cumprod(1 - betas, dim=0)
        self.steps = steps
        self.table = torch.log(abar) - torch.log1p(-abar)  # λ_i, (steps,), decreasing

    def _segment(self, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Index i of the left table point, fraction within the segment, and the table on s's device."""
        table = self.table.to(s.device)
        pos = s.to(torch.float64).clamp(0, 1) * (self.steps - 1)
        i = pos.floor().long().clamp(max=self.steps - 2)
        return i, pos - i, table

    def log_snr(self, s):
        s = _as_tensor(s)
        i, frac, table = self._segment(s)
        lam = table[i] + frac * (table[i + 1] - table[i])
        return lam.to(s.dtype) if s.is_floating_point() else lam

    def _d_log_snr(self, s: Tensor) -> Tensor:
        i, _, table = self._segment(s)
        return ((table[i + 1] - table[i]) * (self.steps - 1)).to(s.dtype)

    def alpha(self, s):
        return torch.sigmoid(self.log_snr(s)).sqrt()

    def sigma(self, s):
        return torch.sigmoid(-self.log_snr(s)).sqrt()

    def d_alpha(self, s):
        s = _as_tensor(s)
        return 0.5 * self.alpha(s) * self.sigma(s) ** 2 * self._d_log_snr(s)  # dα/dλ = ασ²/2

    def d_sigma(self, s):
        s = _as_tensor(s)
        return -0.5 * self.sigma(s) * self.alpha(s) ** 2 * self._d_log_snr(s)  # dσ/dλ = −σα²/2

    def s_from_log_snr(self, lam):
        lam = _as_tensor(lam)
        table = self.table.to(lam.device)
        rev = table.flip(0)  # increasing, rev[j] = table[steps-1-j]
        x = lam.to(torch.float64).clamp(rev[0], rev[-1])
        j = torch.searchsorted(rev, x.contiguous(), right=True).clamp(1, self.steps - 1)
        frac = (x - rev[j - 1]) / (rev[j] - rev[j - 1])
        pos = (self.steps - 1 - (j - 1)) - frac  # table position, between i = steps-1-j and its right neighbour
        s = pos / (self.steps - 1)
        return s.to(lam.dtype) if lam.is_floating_point() else s


SCHEDULES: dict[str, type[Schedule]] = {}


def register_schedule(cls: type[Schedule]) -> type[Schedule]:
    """Add a schedule family under ``cls.name``; usable as a class decorator."""
    SCHEDULES[cls.name] = cls
    return cls


for _cls in (FlowLinear, VPCosine, VPLinear):
    register_schedule(_cls)


_INSTANCES: dict[str, Schedule] = {}


def get_schedule(name: str | Schedule) -> Schedule:
    """The schedule called ``name``; raises ``SpecError`` listing the valid names otherwise."""
    if isinstance(name, Schedule):
        return name
    if name not in SCHEDULES:
        raise SpecError(f"unknown schedule {name!r}; choose one of: {', '.join(sorted(SCHEDULES))}")
    if name not in _INSTANCES:
        _INSTANCES[name] = SCHEDULES[name]()
    return _INSTANCES[name]
