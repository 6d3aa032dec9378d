import math

import pytest
import torch

from hddm_p2p.diffusion import SCHEDULES, get_schedule
from hddm_p2p.errors import SpecError

S = torch.linspace(0.02, 0.98, 49, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_log_snr_inverse_round_trip(name):
    sched = get_schedule(name)
    lam = sched.log_snr(S)
    assert torch.all(lam[1:] < lam[:-1]), "log-SNR must decrease with s"
    torch.testing.assert_close(sched.s_from_log_snr(lam), S, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_log_snr_matches_alpha_sigma(name):
    sched = get_schedule(name)
    expected = torch.log(sched.alpha(S) ** 2 / sched.sigma(S) ** 2)
    torch.testing.assert_close(sched.log_snr(S), expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_derivatives_match_finite_differences(name):
    sched = get_schedule(name)
    s = (torch.floor(S * 999) + 0.5) / 999  # mid-segment: vp-linear's derivative jumps at table points
    h = 1e-7
    torch.testing.assert_close(sched.d_alpha(s), (sched.alpha(s + h) - sched.alpha(s - h)) / (2 * h), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sched.d_sigma(s), (sched.sigma(s + h) - sched.sigma(s - h)) / (2 * h), atol=1e-5, rtol=1e-5)


def test_closed_forms():
    s = torch.tensor([0.25], dtype=torch.float64)
    assert get_schedule("flow-linear").alpha(s).item() == 0.75
    assert get_schedule("flow-linear").sigma(s).item() == 0.25
    assert get_schedule("vp-cosine").alpha(s).item() == pytest.approx(math.cos(math.pi / 8))
    assert get_schedule("vp-cosine").sigma(s).item() == pytest.approx(math.sin(math.pi / 8))


def test_vp_linear_hits_ddpm_table():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    sched = get_schedule("vp-linear")
    i = torch.tensor([0, 1, 250, 500, 999])
    s = i.double() / 999
    torch.testing.assert_close(sched.alpha(s) ** 2, abar[i], atol=1e-12, rtol=0)
    torch.testing.assert_close(sched.alpha(S) ** 2 + sched.sigma(S) ** 2, torch.ones_like(S), atol=1e-12, rtol=0)


def test_unknown_schedule_lists_choices():
    with pytest.raises(SpecError, match="flow-linear.*vp-cosine.*vp-linear"):
        get_schedule("edm")
