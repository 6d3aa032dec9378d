"""Analytic checks of the experiment's own numerics: native DDIM, the x0-error probe, feature diversity."""

from __future__ import annotations

import math

import pytest
import torch

from hddm_p2p.diffusion import ExpertSpec
from hddm_p2p.experiments.loss_curves import x0_error
from hddm_p2p.experiments.metrics import class_diversity, mean_pairwise_cosine_distance
from hddm_p2p.experiments.native import sample_ddim


class Oracle(torch.nn.Module):
    """The exact denoiser of a one-point data set {x*}: ε = (x_s − α x*)/σ, v = ε − x*, on the spec's schedule."""

    def __init__(self, x_star: torch.Tensor, spec: ExpertSpec):
        super().__init__()
        self.x_star, self.spec = x_star, spec
        self.dummy = torch.nn.Parameter(torch.zeros(1))  # gives the probe a device

    def forward(self, x, t_scaled, cond):
        s = (t_scaled.double() / self.spec.time_scale).clamp(1e-6, 1 - 1e-6)
        a = self.spec.sched.alpha(s).view(-1, 1, 1, 1).float()
        sg = self.spec.sched.sigma(s).view(-1, 1, 1, 1).float()
        eps = (x - a * self.x_star) / sg
        return eps if self.spec.prediction.value == "epsilon" else eps - self.x_star


@pytest.mark.parametrize("prediction, schedule", [("epsilon", "vp-linear"), ("epsilon", "vp-cosine"),
                                                  ("epsilon", "flow-linear"), ("velocity", "flow-linear")])
def test_ddim_with_the_exact_denoiser_returns_the_data_point(prediction, schedule):
    spec = ExpertSpec(prediction, schedule, time_scale=1000.0, clip=1.0)
    x_star = torch.rand(1, 3, 4, 4) * 1.6 - 0.8
    out = sample_ddim(Oracle(x_star, spec), spec, torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(0)), 7)
    assert torch.allclose(out, x_star.expand_as(out), atol=1e-4)


@pytest.mark.parametrize("prediction, schedule", [("epsilon", "vp-linear"), ("velocity", "flow-linear"),
                                                  ("epsilon", "flow-linear")])
def test_x0_error_of_the_exact_denoiser_is_zero_and_of_a_biased_one_is_its_bias(prediction, schedule):
    spec = ExpertSpec(prediction, schedule, time_scale=1000.0, clip=1.0)
    x_star = torch.rand(1, 3, 4, 4) * 2 - 1
    x0 = x_star.expand(8, -1, -1, -1).contiguous()
    oracle = Oracle(x_star, spec)
    for t in (0.1, 0.5, 0.9):
        assert x0_error(oracle, spec, x0, t) < 1e-6
    # a denoiser whose x̂0 is off by 0.1 everywhere has error 0.01 per pixel at every t
    biased = Oracle(x_star + 0.1, spec)
    assert x0_error(biased, spec, x0, 0.3) == pytest.approx(0.01, rel=1e-3)


def test_pairwise_cosine_distance_analytic():
    assert mean_pairwise_cosine_distance(torch.eye(3)) == pytest.approx(1.0)  # orthogonal: 1 − 0
    assert mean_pairwise_cosine_distance(torch.ones(4, 5) * 3) == pytest.approx(0.0, abs=1e-12)
    f = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # opposite: 1 − (−1) = 2
    assert mean_pairwise_cosine_distance(f) == pytest.approx(2.0)
    angle = torch.tensor([[1.0, 0.0], [math.cos(1.0), math.sin(1.0)]])
    assert mean_pairwise_cosine_distance(angle) == pytest.approx(1 - math.cos(1.0))


def test_class_diversity_weighs_classes_equally_and_skips_singletons():
    feats = torch.cat([torch.eye(2), torch.ones(3, 2), torch.tensor([[5.0, 1.0]])])
    pred = torch.tensor([0, 0, 1, 1, 1, 2])
    mean, std, groups = class_diversity(feats, pred)
    assert groups == 2 and mean == pytest.approx(0.5) and std == pytest.approx(0.5)
