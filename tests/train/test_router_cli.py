"""``hddm data cluster`` then ``hddm train router`` on real CIFAR-10, driven as a user drives them."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from hddm_p2p.cli.app import app
from hddm_p2p.cluster.assign import load_centroids
from hddm_p2p.models.router import load_router

runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def clusters(cifar_shard, tmp_path_factory):
    out = tmp_path_factory.mktemp("clusters")
    r = runner.invoke(app, ["data", "cluster", "--data", str(cifar_shard), "--k", "2", "--features", "pixels",
                            "--limit", "300", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def _train(*args):
    return runner.invoke(app, ["train", "router", "--steps", "20", "--batch-size", "16", "--limit", "300", *args])


def test_router_from_assignments(clusters, cifar_shard, tmp_path):
    r = _train("--data", str(cifar_shard), "--assignments", str(clusters / "assignments.json"), "--out", str(tmp_path),
               "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output.strip().splitlines()[-1])
    assert report["experts"] == ["cluster:0", "cluster:1"] and len(report["accuracy_by_t"]) == 11
    router, desc = load_router(tmp_path)
    assert desc["feature_extractor"] == "pixels-8x8" and desc["training"]["samples"] == 300
    assert router(torch.randn(3, 3, 32, 32), 0.5).shape == (3, 2)
    assert (tmp_path / "accuracy_by_t.png").stat().st_size > 1000


def test_router_from_expert_dirs(clusters, cifar_shard, tmp_path):
    centroids, meta = load_centroids(clusters / "centroids.safetensors")
    dirs = []
    for j in range(2):
        d = tmp_path / f"expert{j}"
        d.mkdir()
        save_file({"w": torch.full((2,), float(j))}, str(d / "model.safetensors"))
        (d / "expert.json").write_text(json.dumps({
            "kind": "expert", "name": f"c{j}",
            "data_space": {"kind": "pixel", "resolution": 32, "channels": 3, "value_range": [-1.0, 1.0], "vae": None},
            "cluster": {"id": j, "feature_extractor": meta["feature_extractor"], "feature_dim": 192,
                        "centroid": centroids[j].tolist(), "size": 1}}))
        dirs += ["--experts", str(d)]
    r = _train("--data", str(cifar_shard), *dirs, "--out", str(tmp_path / "r"))
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.output and "│ 1.0 │" in r.output
    desc = json.loads((tmp_path / "r" / "router.json").read_text())
    assert all(e.startswith("sha256:") for e in desc["experts"]) and len(set(desc["experts"])) == 2


@pytest.mark.parametrize("flags,message", [
    ([], "exactly one of --assignments"),
    (["--assignments", "a.json", "--experts", "x"], "exactly one of --assignments"),
    (["--experts", "/nonexistent/expert"], "neither an expert directory nor a manifest"),
])
def test_bad_flags(cifar_shard, tmp_path, flags, message):
    r = _train("--data", str(cifar_shard), "--out", str(tmp_path / "r"), *flags)
    assert r.exit_code == 1 and message in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_data_path_with_no_images(tmp_path, clusters):
    (tmp_path / "empty").mkdir()
    r = _train("--data", str(tmp_path / "empty"), "--assignments", str(clusters / "assignments.json"),
               "--out", str(tmp_path / "r"))
    assert r.exit_code == 1 and "no images" in r.output and "Traceback" not in r.output
