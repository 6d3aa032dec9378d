"""Fréchet distance: closed forms for Gaussians, streaming statistics, stored statistics, bad input."""

import numpy as np
import pytest
import scipy.linalg
import torch

from hddm_p2p.errors import CompatibilityError, DataError, ShapeError
from hddm_p2p.eval.frechet import (Stats, StatsAccumulator, frechet_distance, frechet_distance_from_stats, load_stats,
                                   sample_size_warnings, save_stats)


def _rotation(d, rng):
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q


def _stats(mu, sigma, extractor="x", n=1000):
    return Stats(np.asarray(mu, float), np.asarray(sigma, float), n, extractor)


def test_commuting_covariances_match_the_closed_form():
    # Σ_a = Q diag(a) Qᵀ, Σ_b = Q diag(b) Qᵀ  ⇒  FD = ‖μ_a−μ_b‖² + Σ_i (√a_i − √b_i)²
    rng = np.random.default_rng(0)
    d = 16
    q = _rotation(d, rng)
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    mu_a, mu_b = rng.standard_normal(d), rng.standard_normal(d)
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance_from_stats(_stats(mu_a, q @ np.diag(a) @ q.T), _stats(mu_b, q @ np.diag(b) @ q.T))
    assert got == pytest.approx(expected, rel=1e-9)


def test_general_covariances_match_the_sqrtm_form():
    # tr(Σ_a + Σ_b − 2 (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}), the symmetric form of the trace term
    rng = np.random.default_rng(1)
    d = 12
    la, lb = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    sa, sb = la @ la.T + 0.1 * np.eye(d), lb @ lb.T + 0.1 * np.eye(d)
    ra = scipy.linalg.sqrtm(sa).real
    expected = 3.0 + np.trace(sa + sb - 2 * scipy.linalg.sqrtm(ra @ sb @ ra).real)
    got = frechet_distance_from_stats(_stats(np.zeros(d), sa), _stats(np.full(d, 0.5), sb))  # ‖Δμ‖² = 12·0.25
    assert got == pytest.approx(expected, rel=1e-8)


def test_identical_stats_give_zero_and_samples_converge_to_the_population_value():
    rng = np.random.default_rng(2)
    d = 4
    s = _stats(np.ones(d), np.diag([1.0, 2.0, 3.0, 4.0]))
    assert frechet_distance_from_stats(s, s) == pytest.approx(0.0, abs=1e-9)
    x = rng.standard_normal((200_000, d)) * np.sqrt([1.0, 2.0, 3.0, 4.0]) + 1.0
    y = rng.standard_normal((200_000, d)) * 2.0 + 3.0  # Σ_b = 4·I, μ_b = 3
    expected = d * 4.0 + np.sum((np.sqrt([1.0, 2.0, 3.0, 4.0]) - 2.0) ** 2)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=0.02)


def test_streaming_accumulation_equals_numpy_in_float64():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1001, 7)) * 3 + 1e4  # a large common offset must not cost precision
    acc = StatsAccumulator()
    for chunk in np.array_split(x, 9):
        acc.update(torch.from_numpy(chunk.astype(np.float32)))
    s = acc.stats("x")
    x32 = x.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(s.mu, x32.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.sigma, np.cov(x32, rowvar=False), rtol=1e-9, atol=1e-9)
    assert s.n == 1001


def test_stats_round_trip_through_npz(tmp_path):
    rng = np.random.default_rng(4)
    acc = StatsAccumulator()
    acc.update(rng.standard_normal((50, 5)))
    s = acc.stats("cifar10-resnet@abc", {"test_accuracy": 0.91, "source": "cifar10-test"})
    save_stats(s, tmp_path / "ref.npz")
    t = load_stats(tmp_path / "ref.npz")
    assert (t.n, t.extractor, t.info) == (50, "cifar10-resnet@abc", {"test_accuracy": 0.91, "source": "cifar10-test"})
    np.testing.assert_array_equal(t.mu, s.mu)
    np.testing.assert_array_equal(t.sigma, s.sigma)
    assert not list(tmp_path.glob(".*tmp"))


def test_fewer_than_two_images_is_a_one_line_error_naming_the_count():
    acc = StatsAccumulator()
    acc.update(np.zeros((1, 3)))
    with pytest.raises(DataError, match="at least 2 images per set, got 1"):
        acc.stats("x")


def test_small_sample_warns_with_counts():
    s = _stats(np.zeros(64), np.eye(64), n=100)
    (w,) = sample_size_warnings(s, "generated")
    assert "100 images for 64-d" in w and "128" in w
    assert sample_size_warnings(_stats(np.zeros(64), np.eye(64), n=128), "generated") == []
    with pytest.warns(UserWarning, match="biased"):
        frechet_distance(np.random.default_rng(0).standard_normal((10, 8)), np.zeros((10, 8)) + 1)


def test_mismatched_extractors_name_both():
    a, b = _stats(np.zeros(3), np.eye(3), "inception-v3-tf@aaa"), _stats(np.zeros(3), np.eye(3), "cifar10-resnet@bbb")
    with pytest.raises(CompatibilityError, match="'inception-v3-tf@aaa' vs 'cifar10-resnet@bbb'"):
        frechet_distance_from_stats(a, b)


def test_bad_stats_file_and_bad_feature_shapes(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not an hddm statistics file"):
        load_stats(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="does not exist"):
        load_stats(tmp_path / "missing.npz")
    acc = StatsAccumulator()
    acc.update(np.zeros((3, 4)))
    with pytest.raises(ShapeError, match="from 4 to 5"):
        acc.update(np.zeros((3, 5)))
