import pytest
import torch

from hddm_p2p import Ensemble, ExpertSpec, ThresholdRouter
from hddm_p2p.errors import NumericalError, ShapeError, SpecError

from .gaussian import GaussianExpert, true_velocity

M, V = 0.5, 0.25  # data mean and variance
SPECS = {
    "eps/vp-cosine": ExpertSpec("epsilon", "vp-cosine"),
    "x0/vp-linear": ExpertSpec("x0", "vp-linear", time_scale=999),
    "velocity/flow-linear": ExpertSpec("velocity", "flow-linear"),
    "v/vp-cosine": ExpertSpec("v", "vp-cosine", time_scale=1000),
}


def _x(n=32, d=6, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("key", sorted(SPECS))
@pytest.mark.parametrize("t", [0.05, 0.2, 0.35, 0.5])
def test_each_expert_gives_true_flow_velocity(key, t):
    ens = Ensemble([(GaussianExpert(SPECS[key], M, V), SPECS[key])], mode="full")
    x = _x() * 0.8 + 0.3
    torch.testing.assert_close(ens.velocity(x, t).double(), true_velocity(x, t, M, V), atol=1e-4, rtol=1e-4)


def test_heterogeneous_mix_gives_true_flow_velocity():
    keys = ["eps/vp-cosine", "x0/vp-linear", "velocity/flow-linear"]
    ens = Ensemble([(GaussianExpert(SPECS[k], M, V), SPECS[k]) for k in keys], router=None)
    x, t = _x(), torch.linspace(0.05, 0.5, 32, dtype=torch.float64)
    torch.testing.assert_close(ens.velocity(x, t).double(), true_velocity(x, t, M, V), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_sample_recovers_data_moments(solver):
    keys = ["eps/vp-cosine", "x0/vp-linear", "velocity/flow-linear"]
    ens = Ensemble([(GaussianExpert(SPECS[k], M, V), SPECS[k]) for k in keys])
    noise = torch.randn(2000, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x0 = ens.sample(noise, steps=30 if solver == "heun" else 250, solver=solver)
    assert x0.mean().item() == pytest.approx(M, abs=0.02)
    assert x0.var().item() == pytest.approx(V, rel=0.05)


class Fixed:
    """A router with fixed logits per sample."""

    def __init__(self, logits):
        self.logits = logits

    def __call__(self, x_t, t):
        return self.logits


def _counted(n):
    spec = SPECS["velocity/flow-linear"]
    return [GaussianExpert(spec, M, V) for _ in range(n)], spec


def test_unselected_experts_never_run_and_each_runs_once_on_its_samples():
    experts, spec = _counted(4)
    logits = torch.tensor([[5.0, 1, 0, -9]] * 3 + [[0.0, 4, 5, -9]] * 5)
    ens = Ensemble([(e, spec) for e in experts], router=Fixed(logits), mode="top-k", k=2)
    ens.velocity(_x(8), 0.5)
    assert [e.calls for e in experts] == [[3], [8], [5], []]


def test_modes_and_weights_sum_to_one():
    experts, spec = _counted(3)
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    for mode, nonzero in [("top-1", 1), ("top-k", 2), ("full", 3)]:
        ens = Ensemble([(e, spec) for e in experts], router=Fixed(logits), mode=mode, k=2)
        w = ens.weights(_x(2), torch.tensor([0.5, 0.5]))
        torch.testing.assert_close(w.sum(1), torch.ones(2))
        assert ((w > 0).sum(1) == nonzero).all()
    top2 = Ensemble([(e, spec) for e in experts], router=Fixed(logits), mode="top-k", k=2).weights(_x(2), 0.5)
    p = torch.softmax(torch.tensor([2.0, 1.0]), 0)
    torch.testing.assert_close(top2[0], torch.tensor([p[0], p[1], 0.0]))


def test_k_above_experts_means_all():
    experts, spec = _counted(2)
    ens = Ensemble([(e, spec) for e in experts], router=Fixed(torch.zeros(4, 2)), mode="top-k", k=5)
    ens.velocity(_x(4), 0.5)
    assert [e.calls for e in experts] == [[4], [4]]


def test_threshold_router_orders_experts_by_noise_level():
    experts, spec = _counted(2)
    ens = Ensemble([(e, spec) for e in experts], router=ThresholdRouter(0.5, low=[0], high=[1]), mode="top-1")
    ens.velocity(_x(6), torch.tensor([0.1, 0.2, 0.5, 0.6, 0.9, 1.0]))
    assert [e.calls for e in experts] == [[3], [3]]
    for e in experts:
        e.calls.clear()
    ens.sample(_x(2), steps=10)
    assert len(experts[0].calls) == 5 and len(experts[1].calls) == 5  # t = 1.0 … 0.6 high; 0.5 … 0.1 low


def test_router_wrong_shape_names_expected_shape():
    experts, spec = _counted(2)
    ens = Ensemble([(e, spec) for e in experts], router=Fixed(torch.zeros(4, 3)))
    with pytest.raises(ShapeError, match=r"\(4, 2\)"):
        ens.velocity(_x(4), 0.5)


def test_nan_is_reported_with_step_t_and_expert():
    experts, spec = _counted(2)

    def broken(x, t, cond=None):
        return torch.full_like(x, float("nan"))

    ens = Ensemble([(experts[0], spec), (broken, spec)])
    with pytest.raises(NumericalError, match=r"step 0, t=1\.0000 from expert 1"):
        ens.sample(_x(2), steps=4)


def test_bad_spec_fails_at_construction():
    with pytest.raises(SpecError, match="choose one of"):
        ExpertSpec("noise", "flow-linear")
    with pytest.raises(SpecError, match="vp-cosine"):
        ExpertSpec("epsilon", "cosine")
    with pytest.raises(SpecError, match="top-1, top-k, full"):
        Ensemble([(None, SPECS["eps/vp-cosine"])], mode="top-3")


def test_safeguards_bound_converted_velocity_at_high_noise_and_can_be_switched_off():
    spec = ExpertSpec("epsilon", "vp-cosine", clip=1.0)

    def wild(x, t, cond=None):  # an ε-expert that is badly wrong at high noise
        return torch.full_like(x, 3.0)

    x = _x(4)
    on = Ensemble([(wild, spec)]).velocity(x, 0.999)
    off = Ensemble([(wild, spec)], safeguards=False).velocity(x, 0.999)
    assert off.abs().max() > 100  # ε/α_safe blows up without safeguards
    rms_on = on.pow(2).mean(1).sqrt()
    assert (rms_on <= 3.0 + 1.0 + 1e-5).all()  # |u| ≤ rms(ε̂) + clip
