import pytest
import torch

from hddm_p2p.errors import SpecError
from hddm_p2p.models import PRESETS, DiT, DiTConfig, build_dit, count_parameters, get_preset


def _meta_count(name: str, **kw) -> int:
    with torch.device("meta"):
        return count_parameters(build_dit(name, **kw))


def test_dit_xl2_parameter_counts_match_papers():
    # facebookresearch/DiT: 675M (AdaLN-Zero, 1000 classes, learned sigma). pos_embed is a buffer here (0.3M).
    zero = _meta_count("DiT-XL/2", adaln="zero", condition="class", num_classes=1000, learn_sigma=True)
    assert abs(zero / 1e6 - 675) < 1.5
    # AdaLN-Single + text cross-attention (CLIP-L width 768, 77 tokens): ~605M as the paper reports.
    single = _meta_count("DiT-XL/2", adaln="single", condition="text", text_width=768, max_tokens=77)
    assert abs(single / 1e6 - 605) / 605 < 0.01
    # PixArt-α's own figure with T5-XXL (4096 wide, 120 tokens): 611M.
    pixart = _meta_count("DiT-XL/2", adaln="single", condition="text", text_width=4096, max_tokens=120)
    assert abs(pixart / 1e6 - 611) < 1.5
    # The saving: 28 per-block Linear(D, 6D) and the final Linear(D, 2D) become one global Linear(D, 6D)
    # plus tables (6, D) per block and (2, D) for the final layer.
    d = 1152
    saved = 27 * (6 * d * d + 6 * d) + (2 * d * d + 2 * d) - 28 * 6 * d - 2 * d
    assert _meta_count("DiT-XL/2", adaln="zero") - _meta_count("DiT-XL/2") == saved


def test_dit_b2_size():
    assert abs(_meta_count("DiT-B/2", adaln="zero", condition="class", num_classes=1000, learn_sigma=True) / 1e6 - 130) < 1


@pytest.mark.parametrize("adaln", ["single", "zero"])
@pytest.mark.parametrize("condition", ["none", "class", "text"])
def test_forward_shapes_and_conditions(adaln, condition):
    torch.manual_seed(0)
    model = build_dit("tiny", input_size=16, in_channels=3, adaln=adaln, condition=condition, num_classes=10,
                      text_width=12, max_tokens=6)
    with torch.no_grad():  # zero-initialised layers would hide the conditioning: perturb every weight
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, t = torch.randn(4, 3, 16, 16), torch.tensor([0.0, 10.0, 500.0, 1000.0])
    if condition == "class":
        cond = torch.tensor([0, 3, 9, 2])
    elif condition == "text":
        cond = {"tokens": torch.randn(4, 9, 12), "mask": torch.rand(4, 9) > 0.3}
    else:
        cond = None
    out = model(x, t, cond)
    assert out.shape == x.shape and torch.isfinite(out).all()
    null = model(x, t, None)
    assert torch.isfinite(null).all()
    dropped = model(x, t, cond, drop=torch.ones(4, dtype=torch.bool))
    torch.testing.assert_close(dropped, null)
    if condition != "none":
        assert not torch.allclose(out, null)


def test_class_null_is_index_num_classes():
    model = build_dit("tiny", input_size=8, in_channels=3, condition="class", num_classes=5)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3.0, 7.0])
    torch.testing.assert_close(model(x, t, None), model(x, t, torch.tensor([5, -1])))


def test_text_row_without_valid_tokens_is_finite():
    model = build_dit("tiny", input_size=8, in_channels=3, condition="text", text_width=4, max_tokens=3)
    cond = {"tokens": torch.randn(2, 3, 4), "mask": torch.zeros(2, 3, dtype=torch.bool)}
    assert torch.isfinite(model(torch.randn(2, 3, 8, 8), torch.tensor([1.0, 2.0]), cond)).all()


def test_discrete_time_rounds_inside_the_model():
    model = build_dit("tiny", input_size=8, in_channels=3, discrete_time=True)
    torch.nn.init.normal_(model.final_layer.linear.weight, std=0.1)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(model(x, torch.tensor([499.6, 12.2]), None), model(x, torch.tensor([500.0, 12.0]), None))


def test_unpatchify_inverts_patchify_layout():
    model = build_dit("tiny", input_size=8, in_channels=3)
    p = model.config.patch_size
    g = 8 // p  # tokens per side
    x = torch.randn(2, 3, 8, 8)
    tokens = x.reshape(2, 3, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(2, g * g, p * p * 3)  # (B, T, p·p·C)
    torch.testing.assert_close(model.unpatchify(tokens), x)


def test_bad_config_and_unknown_preset():
    with pytest.raises(SpecError, match="DiT-XL/2"):
        get_preset("DiT-XXL/2")
    with pytest.raises(SpecError, match="adaln"):
        DiTConfig(adaln="none")
    with pytest.raises(SpecError, match="num_classes"):
        DiTConfig(condition="class")


def test_config_json_round_trip():
    for name in PRESETS:
        cfg = get_preset(name, in_channels=3, condition="class", num_classes=10)
        assert DiTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(SpecError, match="bogus"):
        DiTConfig.from_dict({"bogus": 1})


def test_model_is_deterministic_for_a_seed():
    torch.manual_seed(3)
    a = DiT(get_preset("tiny", input_size=8, in_channels=3)).state_dict()
    torch.manual_seed(3)
    b = DiT(get_preset("tiny", input_size=8, in_channels=3)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
