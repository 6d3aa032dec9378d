import pytest
import torch

from hddm_p2p.diffusion import get_schedule, to_pivot
from hddm_p2p.errors import SpecError
from hddm_p2p.models import build_dit
from hddm_p2p.train.objectives import ObjectiveConfig, diffusion_loss, sample_time


def _eval_loss(model, x0, obj, seed=123) -> float:
    with torch.no_grad():
        return float(sum(diffusion_loss(model, x0, None, obj, torch.Generator().manual_seed(seed + i))
                         for i in range(4)) / 4)


@pytest.mark.parametrize("objective,schedule", [("ddpm", "vp-linear"), ("fm", "flow-linear"),
                                                ("x0", "vp-cosine"), ("v", "vp-cosine")])
def test_tiny_expert_loss_falls_on_a_fixed_batch_of_cifar(cifar_small, objective, schedule):
    torch.manual_seed(0)
    x0 = cifar_small.model_input(torch.arange(16), "cpu")  # fixed batch of real images in [-1, 1]
    obj = ObjectiveConfig(objective, schedule, time_scale=1000)
    model = build_dit("tiny", input_size=32, in_channels=3)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    before = _eval_loss(model, x0, obj)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        loss = diffusion_loss(model, x0, None, obj, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _eval_loss(model, x0, obj)
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize("objective", ["ddpm", "fm", "x0", "v"])
@pytest.mark.parametrize("schedule", ["flow-linear", "vp-cosine", "vp-linear"])
def test_target_is_the_prediction_the_core_inverts(objective, schedule):
    """A perfect model (returning the target) is read back by the core as the true (x0, ε)."""
    obj = ObjectiveConfig(objective, schedule)
    x0 = torch.randn(6, 3, 4, 4, dtype=torch.float64)
    seen = {}

    def oracle(x_s, t, cond):
        seen["x_s"], seen["t"] = x_s, t
        return torch.zeros_like(x_s)

    gen = torch.Generator().manual_seed(1)
    loss = diffusion_loss(oracle, x0, None, obj, gen)
    # replay the generator to get the same s, ε and check the target the loss used
    gen = torch.Generator().manual_seed(1)
    s = sample_time(6, obj, gen, "cpu")
    eps = torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
    sch = get_schedule(schedule)
    a, sg = sch.alpha(s).double().view(-1, 1, 1, 1), sch.sigma(s).double().view(-1, 1, 1, 1)
    torch.testing.assert_close(seen["x_s"], a * x0 + sg * eps)
    torch.testing.assert_close(seen["t"], obj.time_scale * s)
    from hddm_p2p.diffusion import from_pivot
    target = from_pivot(obj.prediction, x0, eps, a, sg)
    torch.testing.assert_close(loss, (target.float() ** 2).mean())
    x0_hat, eps_hat = to_pivot(obj.prediction, target, seen["x_s"], a, sg)
    keep = (s > 0.02) & (s < 0.98)  # inversions divide by α or σ
    torch.testing.assert_close(x0_hat[keep], x0[keep])
    torch.testing.assert_close(eps_hat[keep], eps[keep])


def test_logit_normal_times_concentrate_in_the_middle():
    obj = ObjectiveConfig(time_sampling="logit-normal")
    s = sample_time(20000, obj, torch.Generator().manual_seed(0), "cpu")
    assert 0 < s.min() and s.max() < 1
    assert abs(s.mean() - 0.5) < 0.01 and ((s > 0.25) & (s < 0.75)).float().mean() > 0.6


def test_bad_objective_config():
    with pytest.raises(SpecError, match="ddpm"):
        ObjectiveConfig("eps")
    with pytest.raises(SpecError, match="flow-linear"):
        ObjectiveConfig("fm", "cosine")
    with pytest.raises(SpecError, match="uniform"):
        ObjectiveConfig(time_sampling="beta")
