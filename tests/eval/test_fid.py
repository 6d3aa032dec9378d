"""FID through torch-fidelity's Inception: a randomly initialised network with the real architecture, and errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from hddm_p2p.errors import DataError, SpecError
from hddm_p2p.eval.evaluate import evaluate_fd, source_stats
from hddm_p2p.eval.extractors import get_extractor
from hddm_p2p.eval.fid import InceptionExtractor, WeightsUnavailable


class _Unloaded(FeatureExtractorInceptionV3):
    """torch-fidelity's network with its freshly initialised weights (its constructor always loads a file)."""

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return None


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("inception")
    torch.save({}, d / "empty.pth")
    torch.manual_seed(0)
    net = _Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(d / "empty.pth"))
    torch.save(net.state_dict(), d / "random-inception.pth")
    return d / "random-inception.pth"


def test_without_weights_offline_the_error_says_what_to_pass():
    with pytest.raises(WeightsUnavailable) as e:
        get_extractor("inception")
    msg = str(e.value)
    assert "--inception-weights PATH" in msg and "--extractor classifier:PATH" in msg and "\n" not in msg


def test_unknown_extractor_and_bad_weight_files(tmp_path):
    with pytest.raises(SpecError, match="unknown feature extractor 'dinov2'"):
        get_extractor("dinov2")
    with pytest.raises(SpecError, match="unknown feature extractor 'classifier'"):
        get_extractor("classifier")  # a classifier needs its directory
    with pytest.raises(DataError, match="does not exist"):
        get_extractor(f"inception:{tmp_path / 'missing.pth'}")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(DataError, match="not an InceptionV3 state dict"):
        InceptionExtractor.load(tmp_path / "junk.pth")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "partial.pth")
    with pytest.raises(DataError, match="not an InceptionV3 state dict"):
        InceptionExtractor.load(tmp_path / "partial.pth")


@pytest.mark.slow  # five 299×299 InceptionV3 forwards and one 2048-d trace term: seconds on idle cores
def test_random_inception_gives_fid_records_with_its_id(random_inception_weights):
    ext = get_extractor("inception", inception_weights=random_inception_weights)
    assert ext.id.startswith("inception-v3-tf@") and ext.dim == 2048
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=g)
    b = (a.float() * 0.5).to(torch.uint8)  # darker copies: a different distribution
    feats = ext(a)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all() and feats.abs().max() > 0
    torch.testing.assert_close(ext(a[1:]), feats[1:], rtol=1e-4, atol=1e-7)  # no batch dependence
    ref = source_stats(a, ext, progress=False)
    assert ref.n == 2 and ref.extractor == ext.id
    np.testing.assert_allclose(ref.mu, feats.double().mean(0).numpy(), rtol=1e-5)
    rec = evaluate_fd(b, ref, ext, batch=2, progress=False)  # 2 generated images vs the stats of 2 references
    assert rec["metric"] == "FID" and rec["extractor"] == ext.id and rec["value"] > 0
    assert (rec["n_gen"], rec["n_ref"], rec["feature_dim"]) == (2, 2, 2048)
    assert any("2 images for 2048-d" in w for w in rec["warnings"])
