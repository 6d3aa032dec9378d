"""``hddm data cluster`` driven as a user drives it, on real CIFAR-10 shards."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hddm_p2p.cli.app import app
from hddm_p2p.cluster.assign import load_centroids, nearest_centroid
from hddm_p2p.cluster.extract import load_features

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["data", "cluster", *map(str, args)])


@pytest.fixture(scope="module")
def clustered(cifar_test_shard, tmp_path_factory):
    out = tmp_path_factory.mktemp("clusters")
    r = _run("--data", cifar_test_shard, "--k", 4, "--levels", "16:4", "--features", "pixels", "--limit", 400,
             "--shard-size", 128, "--out", out, "--seed", 3)
    assert r.exit_code == 0, r.output
    return out


def test_outputs_follow_the_contract(clustered):
    assignments = json.loads((clustered / "assignments.json").read_text())
    summary = json.loads((clustered / "summary.json").read_text())
    centroids, meta = load_centroids(clustered / "centroids.safetensors")
    assert len(assignments) == 400 and set(assignments.values()) == {0, 1, 2, 3}
    assert centroids.shape == (4, 192)
    assert meta == {"feature_extractor": "pixels-8x8", "feature_dim": "192", "k": "4", "levels": "16:4"}
    assert summary["sizes"] == [list(assignments.values()).count(k) for k in range(4)]
    assert summary["count"] == 400 and summary["seed"] == 3 and summary["feature_extractor"] == "pixels-8x8"
    fs = load_features(clustered / "features")
    assert fs.keys == list(assignments)
    # each centroid is the mean of its members' features
    labels = np.array([assignments[k] for k in fs.keys])
    np.testing.assert_allclose(centroids[2], fs.features[labels == 2].mean(0), atol=1e-5)
    # most samples sit nearest their own centroid (hierarchical assignment need not equal it exactly)
    assert (nearest_centroid(fs.features, centroids)[0] == labels).mean() > 0.8


def test_contact_sheets_are_valid_pngs(clustered):
    sheets = sorted((clustered / "contact_sheets").iterdir())
    assert [p.name for p in sheets] == [f"cluster_{k:02d}.png" for k in range(4)]
    for p in sheets:
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width == 8 * 64 and im.height > 64
            assert np.asarray(im.convert("L")).std() > 10  # real pictures, not a blank canvas


def test_same_seed_same_assignments(clustered, cifar_test_shard, tmp_path):
    r = _run("--data", cifar_test_shard, "--k", 4, "--levels", "16:4", "--features", clustered / "features",
             "--limit", 400, "--out", tmp_path, "--seed", 3)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "assignments.json").read_bytes() == (clustered / "assignments.json").read_bytes()


@pytest.mark.parametrize("args,message", [
    (["--k", 500, "--limit", 50], "asked for 500 clusters but there are only 50 samples"),
    (["--k", 4, "--levels", "3:4"], "fine > coarse"),
    (["--k", 4, "--features", "nope"], "unknown feature extractor"),
])
def test_bad_flags_fail_in_one_line(cifar_test_shard, tmp_path, args, message):
    r = _run("--data", cifar_test_shard, "--out", tmp_path / "o", "--features", "pixels", *args)
    assert r.exit_code == 1
    assert message in r.output and r.output.strip().startswith("error:") and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_data_path_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    r = _run("--data", tmp_path / "empty", "--k", 2, "--features", "pixels", "--out", tmp_path / "o")
    assert r.exit_code == 1 and "no images found" in r.output and len(r.output.strip().splitlines()) == 1


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(12):
        sub = tmp_path / "imgs" / ("dark" if i % 2 else "light")
        sub.mkdir(parents=True, exist_ok=True)
        base = 30 if i % 2 else 220
        Image.fromarray((base + rng.integers(0, 20, (16, 16, 3))).astype(np.uint8)).save(sub / f"{i}.png")
    r = _run("--data", tmp_path / "imgs", "--k", 2, "--features", "pixels", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    a = json.loads((tmp_path / "o" / "assignments.json").read_text())
    assert len({a[k] for k in a if k.startswith("dark")}) == 1 and len(set(a.values())) == 2


def test_empty_cluster_fails_in_one_line(tmp_path):
    (tmp_path / "same").mkdir()
    for i in range(6):  # six copies of one picture: a second cluster can only be empty
        Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / "same" / f"{i}.png")
    r = _run("--data", tmp_path / "same", "--k", 2, "--features", "pixels", "--out", tmp_path / "o")
    assert r.exit_code == 1 and "empty" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "assignments.json").exists()


def test_random_timm_vit_features(cifar_test_shard, tmp_path):
    r = _run("--data", cifar_test_shard, "--k", 2, "--features", "timm:vit_tiny_patch16_224:random",
             "--limit", 40, "--out", tmp_path)
    assert r.exit_code == 0, r.output
    _, meta = load_centroids(tmp_path / "centroids.safetensors")
    assert meta["feature_extractor"] == "timm:vit_tiny_patch16_224:random" and meta["feature_dim"] == "192"
