"""Router training on real training steps: synthetic two-cluster images, and experts' centroids."""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from hddm_p2p.cluster.features import PixelExtractor
from hddm_p2p.errors import CompatibilityError, DataError, ShapeError
from hddm_p2p.models.router import load_router
from hddm_p2p.p2p.manifests import RouterDescription
from hddm_p2p.train.router import (RouterTrainConfig, train_router_for_experts, train_router_from_assignments,
                                   train_router_from_paths)

CFG = RouterTrainConfig(steps=150, batch_size=32, resolution=16, holdout=0.2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only contend on a shared CPU
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def two_clusters(tmp_path_factory):
    """400 16×16 PNGs: cluster 0 dark, cluster 1 bright, both with strong per-pixel noise."""
    root = tmp_path_factory.mktemp("two_clusters")
    rng, assignments = np.random.default_rng(0), {}
    for i in range(400):
        c = i % 2
        arr = np.clip((60 if c == 0 else 190) + rng.normal(0, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / f"{i:04d}.png")
        assignments[f"{i:04d}"] = c
    (root.parent / f"{root.name}-assignments.json").write_text(json.dumps(assignments))
    return root, root.parent / f"{root.name}-assignments.json"


@pytest.fixture(scope="module")
def trained(two_clusters, tmp_path_factory):
    data, assignments = two_clusters
    out = tmp_path_factory.mktemp("router")
    ids = ["sha256:" + "0" * 64, "sha256:" + "1" * 64]
    return out, train_router_from_assignments(str(data), assignments, out, CFG, ids)


def test_learns_clusters_at_low_noise_and_falls_to_chance_at_pure_noise(trained):
    _, desc = trained
    acc = dict((round(t, 1), a) for t, a in desc["accuracy_by_t"])
    assert min(acc[t] for t in (0.0, 0.1, 0.2, 0.3)) >= 0.9
    assert acc[1.0] <= 0.7  # x_1 is pure noise: only the class prior is left
    assert acc[1.0] < acc[0.3] - 0.2


def test_router_dir_follows_the_contract(trained):
    out, desc = trained
    on_disk = json.loads((out / "router.json").read_text())
    assert on_disk == desc and on_disk["kind"] == "router" and on_disk["path"] == "flow-linear"
    RouterDescription.model_validate_json(json.dumps({k: v for k, v in on_disk.items() if k != "kind"}))  # manifest
    assert on_disk["data_space"] == {"kind": "pixel", "resolution": 16, "channels": 3, "value_range": [-1.0, 1.0],
                                     "vae": None}
    with Image.open(out / "accuracy_by_t.png") as im:
        assert im.format == "PNG" and im.width > 300
    router, _ = load_router(out)
    x0 = torch.full((4, 3, 16, 16), 0.6)  # bright: cluster 1
    assert router(0.9 * x0 + 0.1 * torch.randn_like(x0), 0.1).argmax(1).tolist() == [1, 1, 1, 1]


def test_same_seed_same_router(two_clusters, tmp_path):
    data, assignments = two_clusters
    cfg = RouterTrainConfig(steps=5, batch_size=16, resolution=16, seed=3)
    for name in ("a", "b"):
        train_router_from_assignments(str(data), assignments, tmp_path / name, cfg)
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _expert_dir(path, name, centroid, extractor="pixels-8x8", space_res=16):
    path.mkdir()
    save_file({"w": torch.tensor([float(len(name))])}, str(path / "model.safetensors"))
    desc = {"kind": "expert", "name": name, "data_space": {"kind": "pixel", "resolution": space_res, "channels": 3,
                                                            "value_range": [-1.0, 1.0], "vae": None},
            "cluster": {"id": 0, "feature_extractor": extractor, "feature_dim": len(centroid),
                        "centroid": [float(v) for v in centroid], "size": 200}}
    (path / "expert.json").write_text(json.dumps(desc))
    return path


def test_experts_centroids_label_local_data(two_clusters, tmp_path):
    data, assignments = two_clusters
    truth = json.loads(assignments.read_text())
    ex = PixelExtractor(8)
    means = [ex([Image.open(data / f"{k}.png") for k in truth if truth[k] == c][:50]).mean(0) for c in (1, 0)]
    dirs = [_expert_dir(tmp_path / "bright", "bright", means[0]), _expert_dir(tmp_path / "dark", "dark", means[1])]
    cfg = RouterTrainConfig(steps=40, batch_size=32, holdout=0.2)
    desc = train_router_from_paths(dirs, str(data), tmp_path / "r", cfg)
    sha = [hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest() for d in dirs]
    assert desc["experts"] == [f"sha256:{h}" for h in sha]  # column 0 is the bright expert
    assert desc["feature_extractor"] == "pixels-8x8" and desc["training"]["samples"] == 400
    acc = dict((round(t, 1), a) for t, a in desc["accuracy_by_t"])
    assert acc[0.1] >= 0.9  # the centroid labels equal the planted clusters, so they are learnable


def test_experts_in_different_feature_spaces_are_refused(tmp_path):
    a = {"name": "a", "cluster": {"feature_extractor": "dinov2_vitl14", "feature_dim": 2, "centroid": [0, 1]}}
    b = {"name": "b", "cluster": {"feature_extractor": "pixels-8x8", "feature_dim": 2, "centroid": [0, 1]}}
    with pytest.raises(CompatibilityError, match=r"expert 1 \(b\) has cluster.feature_extractor 'pixels-8x8'"):
        train_router_for_experts([a, b], ["sha256:" + "0" * 64, "sha256:" + "1" * 64], "unused", tmp_path)
    b["cluster"] = {**a["cluster"], "feature_dim": 3, "centroid": [0, 1, 2]}
    with pytest.raises(CompatibilityError, match="cluster.feature_dim"):
        train_router_for_experts([a, b], ["sha256:" + "0" * 64, "sha256:" + "1" * 64], "unused", tmp_path)
    with pytest.raises(CompatibilityError, match=r"expert 0 \(x\) declares no cluster"):
        train_router_for_experts([{"name": "x"}, b], ["sha256:" + "0" * 64, "sha256:" + "1" * 64], "unused", tmp_path)


def test_centroids_of_the_wrong_width_for_their_extractor(two_clusters, tmp_path):
    data, _ = two_clusters
    dirs = [_expert_dir(tmp_path / n, n, np.zeros(100)) for n in ("a", "b")]  # pixels-8x8 is 192-d
    with pytest.raises(ShapeError, match="width 192 but the centroids have width 100"):
        train_router_from_paths(dirs, str(data), tmp_path / "r", CFG)


def test_assignments_that_match_no_sample(two_clusters, tmp_path):
    data, _ = two_clusters
    (tmp_path / "a.json").write_text(json.dumps({"other-key": 0, "more": 1}))
    with pytest.raises(DataError, match="none of the 400 sample keys"):
        train_router_from_assignments(str(data), tmp_path / "a.json", tmp_path / "r", CFG)


def test_signed_manifests_name_the_columns_by_cid(two_clusters, tmp_path, hddm_home):
    """Experts given as published manifests: ids are the manifest CIDs, labels from their centroids."""
    from hddm_p2p.p2p.keys import KeyStore
    from hddm_p2p.p2p.publish import publish_dir
    from hddm_p2p.p2p.store import LocalStore
    from tests.p2p.conftest import make_expert_dir

    data, assignments = two_clusters
    truth = json.loads(assignments.read_text())
    ex, store = PixelExtractor(8), LocalStore()
    KeyStore().generate("me")
    space = {"kind": "pixel", "resolution": 16, "channels": 3, "value_range": [-1.0, 1.0], "vae": None}
    manifests, cids = [], []
    for c in (0, 1):
        centroid = ex([Image.open(data / f"{k}.png") for k in truth if truth[k] == c][:50]).mean(0)
        cluster = {"id": c, "feature_extractor": "pixels-8x8", "feature_dim": 192,
                   "centroid": [float(v) for v in centroid], "size": 200}
        d = make_expert_dir(tmp_path / f"e{c}", name=f"expert-{c}", seed=c, cluster=cluster, data_space=space)
        cid = publish_dir(d, store, key_name="me", progress=False).cid
        (tmp_path / f"m{c}.json").write_bytes(store.cat(cid))
        manifests.append(tmp_path / f"m{c}.json")
        cids.append(cid)
    desc = train_router_from_paths(manifests, str(data), tmp_path / "r", RouterTrainConfig(steps=40, batch_size=32))
    assert desc["experts"] == cids
    RouterDescription.model_validate_json(json.dumps({k: v for k, v in desc.items() if k != "kind"}))
    assert dict((round(t, 1), a) for t, a in desc["accuracy_by_t"])[0.1] >= 0.9
