"""Gradient clipping folded into the fused AdamW step (``hddm_p2p.train.clip``) against ``clip_grad_norm_``."""

import pytest
import torch

from hddm_p2p.train.clip import clipped_step, fused_step_can_scale


def _train(mode: str, fused: bool, scale: float, steps: int = 5):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01, fused=fused, foreach=not fused)
    gen, norms = torch.Generator().manual_seed(1), []
    for _ in range(steps):
        loss = model(torch.randn(8, 16, generator=gen) * scale).square().mean()
        opt.zero_grad()
        loss.backward()
        if mode == "reference":
            norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
            opt.step()
        else:
            with clipped_step(opt, model.parameters(), 1.0, fold=mode == "fold") as norm:
                if mode == "fold" and fused:
                    assert opt.grad_scale.item() == pytest.approx(max(1.0, (norm.item() + 1e-6) / 1.0), rel=1e-6)
                opt.step()
            assert not hasattr(opt, "grad_scale")  # the scale never outlives its step
            norms.append(norm)
    return [p.detach().clone() for p in model.parameters()], torch.stack(norms)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("scale", [0.01, 100.0])  # gradients under the limit (no clipping) and far over it
def test_clipped_step_equals_clip_grad_norm(fused, scale):
    ref, ref_norms = _train("reference", fused, scale)
    for mode in ("fold", "in place"):
        got, norms = _train(mode, fused, scale)
        assert torch.allclose(norms, ref_norms, rtol=1e-6)
        worst = max((a - b).abs().max().item() for a, b in zip(got, ref))
        assert worst < 1e-6, (mode, worst)
    if scale > 1:
        assert (ref_norms > 1).all()  # the large case did clip, every step


def test_only_fused_optimizers_take_the_scale():
    p = [torch.nn.Parameter(torch.zeros(3))]
    assert fused_step_can_scale(torch.optim.AdamW(p, fused=True))
    assert not fused_step_can_scale(torch.optim.AdamW(p, foreach=True))
    assert not fused_step_can_scale(torch.optim.SGD(p, lr=0.1))
