"""CLIP score: the error without a model, and a tiny randomly initialised CLIP saved like a real one."""

import json
import string

import pytest
import torch

from hddm_p2p.errors import DataError
from hddm_p2p.eval.clip_score import ClipScorer
from hddm_p2p.eval.evaluate import evaluate_clip
from hddm_p2p.eval.fid import WeightsUnavailable


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A 2-layer CLIP (random weights) + a character-level CLIP tokenizer, via save_pretrained."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    d = tmp_path_factory.mktemp("tiny-clip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits:
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    cfg = CLIPConfig(text_config=dict(vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=0,
                                      eos_token_id=1, pad_token_id=1, **small),
                     vision_config=dict(image_size=32, patch_size=8, **small), projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(d)
    image_proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_proc, tokenizer=tok).save_pretrained(d)
    return d


def test_without_a_model_the_error_says_what_to_pass(tmp_path):
    with pytest.raises(WeightsUnavailable, match="--clip PATH"):
        ClipScorer.load(None)
    with pytest.raises(WeightsUnavailable, match="has no config.json"):
        ClipScorer.load(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DataError, match="not a loadable CLIP"):
        ClipScorer.load(tmp_path)


def test_tiny_random_clip_scores_in_range_and_depends_on_the_prompt(tiny_clip):
    scorer = ClipScorer.load(tiny_clip)
    assert scorer.id.startswith("clip@")
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    s1 = scorer(x, ["a photo of a cat"] * 4)
    c1, c2 = scorer.cosine(x, ["a photo of a cat"] * 4), scorer.cosine(x, ["a truck"] * 4)
    assert s1.shape == (4,) and ((s1 >= 0) & (s1 <= 100)).all()
    torch.testing.assert_close(s1, 100 * c1.clamp(min=0))
    assert ((c1 >= -1) & (c1 <= 1)).all() and not torch.allclose(c1, c2)
    torch.testing.assert_close(scorer.cosine(x[:2], ["a photo of a cat"] * 2), c1[:2], rtol=1e-4, atol=1e-4)
    rec = evaluate_clip(scorer, x, ["a photo of a cat"] * 4, batch=3, source="mem")
    assert rec["metric"] == "CLIP-score" and rec["extractor"] == scorer.id and rec["n"] == 4
    assert rec["value"] == pytest.approx(float(s1.double().mean()), rel=1e-4)
    with pytest.raises(DataError, match="4 images but 5 prompts"):
        evaluate_clip(scorer, x, ["a"] * 5)
    with pytest.raises(DataError, match="more images than prompts"):
        evaluate_clip(scorer, x, ["a"] * 3)
