"""LPIPS diversity with the real lpips network (shipped linear layers; random or local backbone)."""

import itertools

import numpy as np
import pytest
import torch
import torchvision

from hddm_p2p.errors import DataError, ShapeError
from hddm_p2p.eval.diversity import group_diversity, load_lpips, lpips_diversity
from hddm_p2p.eval.evaluate import evaluate_diversity
from hddm_p2p.eval.fid import WeightsUnavailable


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return load_lpips("alex", allow_random_backbone=True)


def _images(n, seed):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_identical_images_have_zero_diversity_and_different_ones_positive(model):
    x = _images(1, 0).repeat(4, 1, 1, 1)
    assert group_diversity(model, x) == pytest.approx(0.0, abs=1e-7)
    assert group_diversity(model, _images(4, 1)) > 0.01


def test_group_mean_equals_a_brute_force_double_loop(model):
    x = _images(5, 2)
    brute = [float(model.pairs(x[i:i + 1], x[j:j + 1])) for i in range(5) for j in range(5) if i < j]
    assert len(brute) == 10
    assert group_diversity(model, x, batch=3) == pytest.approx(np.mean(brute), rel=1e-5)
    sym = float(model.pairs(x[1:2], x[0:1]))
    assert sym == pytest.approx(brute[0], rel=1e-4)  # LPIPS is symmetric, so unordered pairs suffice


def test_mean_and_std_are_over_groups(model):
    groups = {"a": _images(3, 3), "b": _images(1, 4).repeat(3, 1, 1, 1), "c": _images(4, 5)}
    per = [group_diversity(model, g) for g in groups.values()]
    mean, std = lpips_diversity(groups, model)
    assert mean == pytest.approx(np.mean(per)) and std == pytest.approx(np.std(per))
    rec = evaluate_diversity(groups, model, source="mem")
    assert rec["metric"] == "LPIPS-diversity" and rec["extractor"] == "lpips-alex@random-backbone"
    assert rec["n_groups"] == 3 and rec["group_sizes"] == [3, 4] and rec["per_group"]["b"] < 1e-6
    assert "random LPIPS backbone" in rec["warnings"][0]


def test_without_backbone_weights_it_fails_unless_random_is_asked_for(tmp_path):
    with pytest.raises(WeightsUnavailable, match="--lpips-backbone PATH"):
        load_lpips("alex")
    with pytest.raises(DataError, match="do not exist"):
        load_lpips("alex", tmp_path / "none.pth")
    with pytest.raises(DataError, match="unknown LPIPS backbone 'resnet'"):
        load_lpips("resnet", allow_random_backbone=True)


def test_a_local_torchvision_backbone_is_loaded_and_named(tmp_path, model):
    torch.manual_seed(1)
    tv = torchvision.models.alexnet()
    torch.save(tv.state_dict(), tmp_path / "alexnet.pth")
    m = load_lpips("alex", tmp_path / "alexnet.pth")
    assert m.id.startswith("lpips-alex@") and "random" not in m.id
    conv0 = dict(m.net.net.slice1.named_children())["0"]
    torch.testing.assert_close(conv0.weight, tv.features[0].weight)
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ShapeError, match="features.0.weight"):
        load_lpips("alex", tmp_path / "bad.pth")


def test_groups_need_two_images(model):
    with pytest.raises(DataError, match="at least 2 per group"):
        group_diversity(model, _images(1, 0))
    with pytest.raises(DataError, match="no groups"):
        lpips_diversity([], model)
