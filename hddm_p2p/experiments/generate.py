"""Sampling one configuration: the shared-velocity ``Ensemble`` ODE, or an expert's native DDIM.

For a given seed every configuration starts from the same Gaussian noise (drawn on the CPU from that
seed), so differences between configurations are not differences of noise (common random numbers).
"""

from __future__ import annotations

from typing import Callable

import torch

from hddm_p2p.diffusion import Ensemble
from hddm_p2p.eval.images import to_uint8
from hddm_p2p.experiments.config import EnsembleConfig, ExperimentConfig
from hddm_p2p.experiments.experts import TrainedExpert
from hddm_p2p.experiments.native import sample_ddim
from hddm_p2p.experiments.routers import autocast, ensemble_router

Tensor = torch.Tensor


def expert_order(e: EnsembleConfig, cfg: ExperimentConfig) -> list[str]:
    """The ensemble's experts in Ensemble order: by cluster for the learned router (its column order)."""
    if e.router.kind == "learned":
        return sorted(e.experts, key=lambda n: cfg.expert(n).cluster)
    return list(e.experts)


def nfe(e: EnsembleConfig, cfg: ExperimentConfig) -> int:
    """Network evaluations per sample and expert consulted: Heun 2·steps − 1, Euler steps, DDIM its steps."""
    if e.sampler == "ddim":
        return ddim_steps(cfg)
    return 2 * cfg.sampling.steps - 1 if cfg.sampling.solver == "heun" else cfg.sampling.steps


def ddim_steps(cfg: ExperimentConfig) -> int:
    s = cfg.sampling
    return s.ddim_steps or (2 * s.steps - 1 if s.solver == "heun" else s.steps)


class Usage:
    """Mean routing weight of each expert over every velocity evaluation and sample (the Ensemble callback)."""

    def __init__(self, names: list[str]):
        self.names, self.total, self.calls = names, None, 0

    def __call__(self, info: dict) -> None:
        w = info["weights"].float().mean(0)  # (K,)
        self.total = w if self.total is None else self.total + w
        self.calls += 1

    def shares(self) -> dict[str, float]:
        if self.total is None:
            return {}
        return {n: round(float(v), 4) for n, v in zip(self.names, (self.total / self.calls).cpu())}


def make_sampler(e: EnsembleConfig, cfg: ExperimentConfig, experts: dict[str, TrainedExpert],
                 learned_router=None) -> tuple[Callable[[Tensor], Tensor], Usage | None]:
    """(noise (B, 3, H, W) on the device → images in [−1, 1], routing-usage record or None for DDIM)."""
    if e.sampler == "ddim":
        te = experts[e.experts[0]]
        return (lambda noise: sample_ddim(te.model, te.spec, noise, ddim_steps(cfg))), None
    order = expert_order(e, cfg)
    ens = Ensemble([(experts[n].model, experts[n].spec) for n in order], ensemble_router(e, order, learned_router),
                   mode=e.mode, k=e.k, safeguards=True)
    usage = Usage(order)
    return (lambda noise: ens.sample(noise, steps=cfg.sampling.steps, solver=cfg.sampling.solver,
                                     callback=usage)), usage


@torch.no_grad()
def generate(sampler: Callable[[Tensor], Tensor], n: int, seeds: list[int] | tuple[int, ...], batch: int,
             shape: tuple[int, ...], device: torch.device, progress: Callable[[int], None] | None = None) -> list[Tensor]:
    """``n`` uint8 images (n, 3, H, W) on the CPU per seed, each from the noise of its seed.

    The seeds' noise is sampled as one stream cut into ``batch``-sized calls, so a batch may span two
    seeds: fewer, larger calls (the sampler is launch-bound at small batches) and the same noise per seed.
    """
    noise = torch.cat([torch.randn((n, *shape), generator=torch.Generator().manual_seed(s)) for s in seeds])
    out = []
    for i in range(0, len(noise), batch):
        with autocast(device):
            x = sampler(noise[i:i + batch].to(device))
        out.append(to_uint8(x.float()).cpu())
        if progress:
            progress(min(batch, len(noise) - i))
    return list(torch.cat(out).split(n))
