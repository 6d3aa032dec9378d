"""The CIFAR-10 classifier behind FD: real training steps on real shards, saved/loaded as a feature extractor."""

import json

import pytest
import torch

from hddm_p2p.errors import DataError, SpecError
from hddm_p2p.eval.classifier import RECIPES, ClassifierExtractor, CifarResNet, get_recipe
from hddm_p2p.eval.classifier_train import augment, lr_at
from hddm_p2p.eval.extractors import FeatureExtractor, get_extractor


def test_quick_recipe_beats_chance_clearly_on_real_cifar(quick_classifier):
    out, desc, wall = quick_classifier
    assert desc["test_accuracy"] > 0.30, desc  # chance is 0.10
    assert desc["n_test"] == 1000 and desc["training"]["steps"] == 200
    assert desc["recipe"] == json.loads(json.dumps({**RECIPES["cifar10-resnet-quick"].__dict__,
                                                    "blocks": [1, 1, 1]}))
    assert desc["id"].startswith("cifar10-resnet@") and len(desc["id"].split("@")[1]) == 12
    print(f"quick classifier: {desc['test_accuracy']:.1%} in {wall:.0f} s")  # ~50 s on 2 busy cores


def test_saved_classifier_loads_as_a_feature_extractor(quick_classifier, cifar):
    out, desc, _ = quick_classifier
    ext = get_extractor(f"classifier:{out}")
    assert isinstance(ext, FeatureExtractor)
    assert ext.id == desc["id"] and ext.dim == 64 and ext.info["test_accuracy"] == desc["test_accuracy"]
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    f = ext(x)
    assert f.shape == (5, 64) and f.dtype == torch.float32
    torch.testing.assert_close(ext(x[:2]), f[:2], rtol=1e-5, atol=1e-5)  # eval mode: no batch dependence
    assert ext(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)).shape == (2, 64)  # resized to 32²
    assert ClassifierExtractor.load(out / "model.safetensors").id == ext.id


def test_not_a_classifier_directory_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="not a classifier directory"):
        ClassifierExtractor.load(tmp_path)
    with pytest.raises(SpecError, match="unknown classifier recipe 'big'"):
        get_recipe("big")


def test_augment_keeps_shape_and_content_and_is_seeded():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    a = augment(x, 2, torch.Generator().manual_seed(0))
    b = augment(x, 2, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    c = augment(x, 0, torch.Generator().manual_seed(1))  # pad 0: each image is itself or its mirror image
    assert all(torch.equal(ci, xi) or torch.equal(ci, xi.flip(2)) for ci, xi in zip(c, x))
    assert not torch.equal(a, x)


def test_lr_schedule_warms_up_then_decays_to_zero():
    r = get_recipe("cifar10-resnet")
    lrs = [lr_at(s, 1000, r) for s in range(1000)]
    assert lrs[0] < lrs[49] == pytest.approx(r.lr) and lrs[-1] < 1e-3 * r.lr
    assert max(lrs) == pytest.approx(r.lr)


def test_full_recipe_architecture_has_the_documented_feature_dim():
    r = get_recipe("cifar10-resnet")
    net = CifarResNet(r.width, r.blocks, r.stem_stride)
    assert net.feature_dim == 4 * r.width == 256
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
