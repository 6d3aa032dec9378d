"""Ensemble dispatch optimisations give the same velocities as the plain path."""

import torch

from hddm_p2p import Ensemble, ExpertSpec
from hddm_p2p.models import build_dit, get_preset


class Fixed:
    def __init__(self, logits):
        self.logits = logits

    def __call__(self, x_t, t):
        return self.logits


def _experts(n=3):
    torch.manual_seed(0)
    spec = ExpertSpec("velocity", "flow-linear", time_scale=1000)
    out = []
    for _ in range(n):
        m = build_dit(get_preset("tiny", input_size=8, in_channels=4, condition="class", num_classes=5)).eval()
        torch.nn.init.normal_(m.final_layer.linear.weight, std=0.1)  # non-zero outputs
        out.append((m, spec))
    return out


def test_batched_cfg_equals_two_calls_and_negative_id_is_null():
    experts = _experts()
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    x, y = torch.randn(6, 4, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    plain = Ensemble(experts, Fixed(logits), mode="top-k", k=2)
    batched = Ensemble(experts, Fixed(logits), mode="top-k", k=2, batch_cfg=True)
    with torch.no_grad():
        a, b = plain.velocity(x, 0.4, y, cfg_scale=3.0), batched.velocity(x, 0.4, y, cfg_scale=3.0)
        m = experts[0][0]
        null = m(x, torch.full((6,), 400.0), None)
        assert torch.allclose(m(x, torch.full((6,), 400.0), torch.full((6,), -1)), null)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a, plain.velocity(x, 0.4, y, cfg_scale=1.0))  # guidance does something


def test_dispatch_runs_each_active_expert_on_its_rows_in_batch_order():
    seen = {}

    def expert(i):
        def f(x, t, cond):
            seen[i] = x[:, 0].clone()
            return x * (i + 1)
        return f

    spec = ExpertSpec("velocity", "flow-linear")
    logits = torch.tensor([[0.0, 5, 4], [5, 4, 0], [5, 0, 4], [0, 5, 4]])
    x = torch.arange(4.0)[:, None].repeat(1, 2)
    u = Ensemble([(expert(i), spec) for i in range(3)], Fixed(logits), mode="top-k", k=2).velocity(x, 0.5)
    assert seen[0].tolist() == [1.0, 2.0] and seen[1].tolist() == [0.0, 1.0, 3.0] and seen[2].tolist() == [0.0, 2.0, 3.0]
    w = torch.zeros(4, 3).scatter(1, logits.topk(2, 1).indices, torch.softmax(logits.topk(2, 1).values, 1))
    torch.testing.assert_close(u, (w * torch.tensor([1.0, 2, 3])).sum(1, keepdim=True) * x)
