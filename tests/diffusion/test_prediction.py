import itertools

import pytest
import torch

from hddm_p2p.diffusion import SCHEDULES, Prediction, convert, from_pivot, get_schedule, to_pivot
from hddm_p2p.errors import SpecError


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("src,dst", list(itertools.product(Prediction, Prediction)))
def test_round_trip_every_pair(name, src, dst):
    g = torch.Generator().manual_seed(0)
    sched = get_schedule(name)
    s = torch.linspace(0.01, 0.99, 64, dtype=torch.float64).view(-1, 1)
    a, sg = sched.alpha(s), sched.sigma(s)
    x0 = torch.randn(64, 8, generator=g, dtype=torch.float64)
    eps = torch.randn(64, 8, generator=g, dtype=torch.float64)
    x_s = a * x0 + sg * eps
    out = convert(from_pivot(src, x0, eps, a, sg), src, dst, x_s, a, sg)
    torch.testing.assert_close(out, from_pivot(dst, x0, eps, a, sg), atol=1e-10, rtol=0)
    back = convert(out, dst, src, x_s, a, sg)
    torch.testing.assert_close(back, from_pivot(src, x0, eps, a, sg), atol=1e-10, rtol=0)


def test_pivot_recovers_x0_and_eps():
    a, sg = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
    x0, eps = torch.tensor([1.5], dtype=torch.float64), torch.tensor([-0.5], dtype=torch.float64)
    x_s = a * x0 + sg * eps
    for p in Prediction:
        got = to_pivot(p, from_pivot(p, x0, eps, a, sg), x_s, a, sg)
        torch.testing.assert_close(got[0], x0)
        torch.testing.assert_close(got[1], eps)


def test_paper_epsilon_to_velocity_on_linear_path():
    # Paper, step 2: under α = 1−t, σ = t the converted velocity is ε_θ − x̂0 with x̂0 = (x_t − t ε_θ)/(1−t).
    t = torch.tensor(0.3, dtype=torch.float64)
    x_t, eps = torch.tensor([0.2], dtype=torch.float64), torch.tensor([0.7], dtype=torch.float64)
    u = convert(eps, Prediction.EPSILON, Prediction.VELOCITY, x_t, 1 - t, t)
    torch.testing.assert_close(u, eps - (x_t - t * eps) / (1 - t))


def test_unknown_prediction_lists_choices():
    with pytest.raises(SpecError, match="epsilon.*velocity.*x0.*v"):
        Prediction.parse("score")
