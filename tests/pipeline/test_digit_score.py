"""The recognisability score: high for real digits it never saw, ~0 for noise and for blends of two digits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hddm_p2p.errors import DataError, ShapeError
from hddm_p2p.pipeline import digit_score as ds


@pytest.fixture(scope="module")
def split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return ds.fit_classifier(xtr, ytr), xte, yte


def test_held_out_real_digits_score_high_and_cover_every_digit(split):
    clf, xte, _ = split
    r = ds.score(xte, clf)
    assert r.fraction >= 0.85 and r.digits_present == 10
    assert sum(r.histogram) == r.recognisable and r.total == len(xte)


def test_noise_and_blends_score_low(split):
    clf, xte, yte = split
    rng = np.random.default_rng(1)
    assert ds.score(rng.uniform(0, 16, (200, 64)), clf).fraction <= 0.02
    assert ds.score(np.clip(8 + 4 * rng.standard_normal((200, 64)), 0, 16), clf).fraction <= 0.02
    sparse = (rng.random((200, 64)) < 0.3) * rng.uniform(0, 16, (200, 64))  # a few bright pixels on black
    assert ds.score(sparse, clf).fraction <= 0.05
    assert ds.score(ds._blends(xte, yte, 200, rng), clf).fraction <= 0.1
    assert ds.score(np.full((5, 64), 6.0), clf).recognisable == 0  # a flat grey square


def test_score_folder_reads_pngs_as_written(tmp_path, split):
    from sklearn.datasets import load_digits

    images = load_digits().images[:20]  # (20, 8, 8) grey levels 0..16
    for i, img in enumerate(images):  # RGB, as the demo writes 3-channel samples
        grey = (img * 255 / 16).round().astype(np.uint8)[..., None]  # (8, 8, 1)
        Image.fromarray(np.repeat(grey, 3, 2)).save(tmp_path / f"{i:02d}.png")
    x = ds.load_samples(tmp_path)
    assert x.shape == (20, 64) and np.abs(x - images.reshape(20, 64)).max() < 0.1
    r = ds.score(x, split[0])
    assert r.recognisable >= 17 and "recognisable: " in r.summary() and r.to_json()["total"] == 20


def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(DataError, match="no PNG samples"):
        ds.load_samples(tmp_path)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ShapeError, match="8×8"):
        ds.load_samples(tmp_path)
    with pytest.raises(ShapeError):
        ds.score(np.zeros((3, 32)))
