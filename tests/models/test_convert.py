"""Conversion from a checkpoint the test builds in facebookresearch/DiT's key layout."""

import pytest
import torch
import torch.nn.functional as F

from hddm_p2p.errors import DataError, ShapeError
from hddm_p2p.models import get_preset
from hddm_p2p.models.convert import T_STAR, init_from_dit_checkpoint
from hddm_p2p.models.layers import TimestepEmbedder, sincos_pos_embed

D, DEPTH, P, C, SIZE, CLASSES = 64, 3, 2, 4, 8, 1000


def original_dit_state(depth=DEPTH) -> dict:
    """Random tensors with the names and shapes of facebookresearch/DiT (learn_sigma, 1000 classes)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 0.1  # noqa: E731
    sd = {"x_embedder.proj.weight": r(D, C, P, P), "x_embedder.proj.bias": r(D),
          "pos_embed": sincos_pos_embed(D, SIZE // P)[None],
          "t_embedder.mlp.0.weight": r(D, 256), "t_embedder.mlp.0.bias": r(D),
          "t_embedder.mlp.2.weight": r(D, D), "t_embedder.mlp.2.bias": r(D),
          "y_embedder.embedding_table.weight": r(CLASSES + 1, D),
          "final_layer.linear.weight": r(P * P * 2 * C, D), "final_layer.linear.bias": r(P * P * 2 * C),
          "final_layer.adaLN_modulation.1.weight": r(2 * D, D), "final_layer.adaLN_modulation.1.bias": r(2 * D)}
    for i in range(depth):
        b = f"blocks.{i}."
        sd |= {b + "attn.qkv.weight": r(3 * D, D), b + "attn.qkv.bias": r(3 * D), b + "attn.proj.weight": r(D, D),
               b + "attn.proj.bias": r(D), b + "mlp.fc1.weight": r(4 * D, D), b + "mlp.fc1.bias": r(4 * D),
               b + "mlp.fc2.weight": r(D, 4 * D), b + "mlp.fc2.bias": r(D),
               b + "adaLN_modulation.1.weight": r(6 * D, D), b + "adaLN_modulation.1.bias": r(6 * D)}
    return sd


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "DiT-fake-256x256.pt"
    torch.save(original_dit_state(), path)
    return path


def _cfg(**kw):
    base = dict(hidden_size=D, depth=DEPTH, num_heads=4, patch_size=P, input_size=SIZE, in_channels=C)
    return get_preset("tiny", **{**base, **kw})


def _dit_modulation(sd, prefix, c):
    return F.linear(F.silu(c), sd[f"{prefix}.adaLN_modulation.1.weight"], sd[f"{prefix}.adaLN_modulation.1.bias"])


def _shared_names():
    names = ["x_embedder.proj.weight", "x_embedder.proj.bias", "pos_embed", "t_embedder.mlp.0.weight",
             "t_embedder.mlp.2.bias"]
    return names + [f"blocks.{i}.{p}.{w}" for i in range(DEPTH) for p in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
                    for w in ("weight", "bias")]


@pytest.mark.parametrize("adaln", ["single", "zero"])
def test_transferred_weights_are_equal_and_the_rest_reinitialised(ckpt, adaln):
    sd = original_dit_state()
    model = init_from_dit_checkpoint(ckpt, _cfg(adaln=adaln, condition="text", text_width=16, max_tokens=4))
    ours = model.state_dict()
    for name in _shared_names():
        assert torch.equal(ours[name], sd[name]), name
    assert model.config.discrete_time and model.config.out_channels == C
    assert not any(k.startswith("y_embedder") for k in ours)  # class embedding removed
    assert torch.count_nonzero(ours["final_layer.linear.weight"]) == 0  # final projection re-initialised
    assert torch.count_nonzero(ours["blocks.0.cross_attn.proj.weight"]) == 0  # new modality, fresh
    if adaln == "zero":
        assert torch.equal(ours["blocks.2.adaLN_modulation.1.weight"], sd["blocks.2.adaLN_modulation.1.weight"])


def test_adaln_single_reparameterisation_reproduces_dit_modulation(ckpt):
    sd = original_dit_state()
    model = init_from_dit_checkpoint(ckpt, _cfg(adaln="single"))
    assert torch.equal(model.t_block[1].weight, sd["blocks.0.adaLN_modulation.1.weight"])
    with torch.no_grad():
        for t in (T_STAR, 17.0, 999.0):
            e = model.t_embedder(torch.tensor([t]))  # (1, D); DiT's c without its class term
            t0 = model.t_block(e)
            for i in range(DEPTH):
                ours = torch.stack(model.blocks[i].modulation(t0), 1).reshape(1, -1)
                theirs = _dit_modulation(sd, f"blocks.{i}", e)
                if i == 0 or t == T_STAR:  # exact: block 0 everywhere, every block at t*
                    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
                else:  # approximate elsewhere, but not identical
                    assert not torch.allclose(ours, theirs, atol=1e-5)
            if t == T_STAR:
                shift, scale = (model.final_layer.scale_shift_table[None] + e[:, None]).unbind(1)
                torch.testing.assert_close(torch.cat([shift, scale], 1), _dit_modulation(sd, "final_layer", e),
                                           rtol=1e-5, atol=1e-5)


def test_timestep_embedder_is_untouched_and_fed_round_999_s(ckpt):
    model = init_from_dit_checkpoint(ckpt, _cfg())
    sd = original_dit_state()
    s = torch.tensor([0.3337, 0.9])
    f = TimestepEmbedder.sinusoid(torch.round(999 * s), 256)
    ref = F.linear(F.silu(F.linear(f, sd["t_embedder.mlp.0.weight"], sd["t_embedder.mlp.0.bias"])),
                   sd["t_embedder.mlp.2.weight"], sd["t_embedder.mlp.2.bias"])
    x = torch.randn(2, C, SIZE, SIZE)
    c, _, _ = model._conditioning(999 * s, None, None, 2)
    torch.testing.assert_close(c, ref)
    assert model(x, 999 * s, None).shape == x.shape


def test_shape_mismatch_names_the_parameter(ckpt, tmp_path):
    with pytest.raises(ShapeError, match="x_embedder.proj.weight"):
        init_from_dit_checkpoint(ckpt, _cfg(in_channels=3))
    with pytest.raises(ShapeError, match="pos_embed"):
        init_from_dit_checkpoint(ckpt, _cfg(input_size=16))
    with pytest.raises(ShapeError, match="blocks.3"):
        init_from_dit_checkpoint(ckpt, _cfg(depth=4))
    with pytest.raises(ShapeError, match="more than 2 blocks"):
        init_from_dit_checkpoint(ckpt, _cfg(depth=2))


def test_training_checkpoint_layout_and_unsafe_pickles(tmp_path):
    path = tmp_path / "0400000.pt"
    torch.save({"model": {}, "ema": original_dit_state(), "opt": {}}, path)
    init_from_dit_checkpoint(path, _cfg())  # takes the EMA weights
    evil = tmp_path / "evil.pt"
    torch.save({"x": object()}, evil)  # not loadable with weights_only=True
    with pytest.raises(DataError, match="weights-only"):
        init_from_dit_checkpoint(evil, _cfg())
    with pytest.raises(DataError, match="does not exist"):
        init_from_dit_checkpoint(tmp_path / "missing.pt", _cfg())
