import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from hddm_p2p.cluster.kmeans import KMeansConfig, cluster_features
from hddm_p2p.errors import DataError, SpecError


def _blobs(seed=0, n=2400, centers=6, dim=32):
    x, y = make_blobs(n, n_features=dim, centers=centers, cluster_std=1.0, random_state=seed)
    return x.astype(np.float32), y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fine", [None, 40])
def test_recovers_planted_blobs(seed, fine):
    x, y = _blobs(seed)
    result = cluster_features(x, KMeansConfig(6, fine, seed=seed))
    assert adjusted_rand_score(y, result.labels) >= 0.95
    assert result.centroids.shape == (6, 32) and result.centroids.dtype == np.float32
    assert result.sizes.sum() == len(x)


def test_centroids_are_member_means():
    x, _ = _blobs()
    r = cluster_features(x, KMeansConfig(6, 24))
    for k in range(6):
        np.testing.assert_allclose(r.centroids[k], x[r.labels == k].mean(0), rtol=1e-4, atol=1e-4)


def test_same_seed_same_clustering_other_seed_may_differ():
    x, _ = _blobs(n=1000, centers=12)
    a = cluster_features(x, KMeansConfig(5, 30, seed=7))
    b = cluster_features(x, KMeansConfig(5, 30, seed=7))
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.centroids, b.centroids)


def test_k_larger_than_samples_is_a_data_error():
    x, _ = _blobs(n=10)
    with pytest.raises(DataError, match="only 10 samples"):
        cluster_features(x, KMeansConfig(11))
    with pytest.raises(DataError, match="only 10 samples"):
        cluster_features(x, KMeansConfig(3, fine=20))


def test_empty_cluster_is_a_data_error():
    x = np.zeros((10, 4), np.float32)
    x[5:] = 1  # two distinct points: a third cluster must stay empty
    with pytest.raises(DataError, match="empty"):
        cluster_features(x, KMeansConfig(3))


@pytest.mark.parametrize("levels,k", [("64-8", 8), ("64:4", 8), ("8:8", 8), ("a:b", 2)])
def test_bad_levels(levels, k):
    with pytest.raises(SpecError):
        KMeansConfig.from_levels(levels, k)


def test_levels_parse():
    assert KMeansConfig.from_levels("64:8", 8) == KMeansConfig(8, 64)
    assert KMeansConfig.from_levels("flat", 8).levels == "flat:8"
