import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hddm_p2p.cluster.assign import load_centroids, nearest_centroid, save_centroids
from hddm_p2p.errors import DataError, ShapeError


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 300), k=st.integers(1, 20), d=st.integers(1, 64), seed=st.integers(0, 2**31))
def test_agrees_with_brute_force(n, k, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    c = rng.normal(size=(k, d)).astype(np.float32)
    labels, dist = nearest_centroid(x, c)
    d2 = ((x.astype(np.float64)[:, None] - c.astype(np.float64)[None]) ** 2).sum(-1)  # (n, k)
    best = d2.min(1)
    # ties within float32 rounding may pick either; the picked centroid must be (numerically) nearest
    np.testing.assert_allclose(d2[np.arange(n), labels], best, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dist, best, rtol=1e-3, atol=1e-3)
    assert (labels == d2.argmin(1)).mean() > 0.99


def test_wrong_width_names_both_widths():
    with pytest.raises(ShapeError, match="width 192 but the centroids have width 1024"):
        nearest_centroid(np.zeros((3, 192), np.float32), np.zeros((4, 1024), np.float32))


def test_centroids_round_trip(tmp_path):
    c = np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32)
    save_centroids(tmp_path / "c.safetensors", c, "pixels-8x8", "32:4")
    back, meta = load_centroids(tmp_path / "c.safetensors")
    assert np.array_equal(back, c)
    assert meta == {"feature_extractor": "pixels-8x8", "feature_dim": "16", "k": "4", "levels": "32:4"}


def test_missing_centroids_file(tmp_path):
    with pytest.raises(DataError, match="cannot read centroids"):
        load_centroids(tmp_path / "nope.safetensors")
