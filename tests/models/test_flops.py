import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hddm_p2p.models import build_dit, get_preset
from hddm_p2p.models.flops import dit_flops, dit_macs


@pytest.mark.parametrize("kw", [dict(adaln="single"), dict(adaln="zero", condition="class", num_classes=10),
                                dict(adaln="single", condition="text", text_width=24, max_tokens=5)])
def test_analytic_flops_match_torch_flop_counter(kw):
    cfg = get_preset("DiT-S/2", input_size=16, in_channels=4, **kw).replace(depth=2)
    model = build_dit(cfg)
    B = 2
    x, t = torch.randn(B, 4, 16, 16), torch.rand(B) * 1000
    cond = {"tokens": torch.randn(B, 5, 24), "mask": torch.ones(B, 5, dtype=torch.bool)} if "text_width" in kw else None
    with FlopCounterMode(display=False) as counter:
        model(x, t, cond)
    measured = counter.get_total_flops() / B
    assert abs(measured - dit_flops(cfg)) / measured < 0.01, (measured, dit_flops(cfg))


def test_dit_xl2_matches_the_paper():
    # DiT paper, Table 4: DiT-XL/2 at 256² (32×32×4 latents) = 118.6 "Gflops" (multiply-adds)
    cfg = get_preset("DiT-XL/2", input_size=32, in_channels=4, adaln="zero", condition="class", num_classes=1000,
                     learn_sigma=True)
    assert abs(dit_macs(cfg) / 1e9 - 118.6) < 0.5
    assert dit_flops(cfg, training=True) == 6 * dit_macs(cfg)
