"""The toy experiment end to end through the CLI, on real CIFAR-10 shards, on the CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hddm_p2p.cli.app import app
from hddm_p2p.experiments.runner import FILES

from tests.experiments.conftest import REPO


@pytest.fixture(scope="module")
def toy_run(cifar, tmp_path_factory) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("toy") / "run"
    config = out.parent / "cifar10_toy.yaml"  # the kept config, pointed at wherever the shards are here
    config.write_text((REPO / "experiments" / "cifar10_toy.yaml").read_text().replace("/work/shared/data/cifar10",
                                                                                       str(cifar)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = CliRunner().invoke(app, ["experiment", "run", str(config), "--out",
                                     str(out), "--device", "cpu", "--quiet"])
    finally:
        torch.set_num_threads(threads)
    assert r.exit_code == 0, r.output
    return out, json.loads((out / "results.json").read_text()), r.output


def test_every_configuration_has_finite_numbers(toy_run):
    _, res, output = toy_run
    rows = res["ensembles"]
    assert [r["name"] for r in rows] == ["monolithic", "hom-top2", "het1-full", "c0-ddpm-native",
                                         "c0-fm-first-tau0.3", "c0-ddpm-first-tau0.3"]
    for r in rows:
        assert r["status"] == "ok", r
        assert len(r["fd"]["per_seed"]) == 2 and all(math.isfinite(v) and v >= 0 for v in r["fd"]["per_seed"])
        assert 0 <= r["diversity"]["mean"] <= 2
    assert "6/6 configurations evaluated" in output
    usage = {r["name"]: r["expert_usage"] for r in rows}
    assert set(usage["hom-top2"]) == {"fm-c0", "fm-c1", "fm-c2", "fm-c3"}
    assert sum(usage["hom-top2"].values()) == pytest.approx(1, abs=1e-3)
    assert usage["c0-ddpm-native"] == {}  # DDIM: no routing
    # Heun, 2 steps: velocities at t = 1, 0.5, 0.5 (the last step to t = 0 is Euler), all above τ = 0.3
    assert usage["c0-fm-first-tau0.3"] == {"ddpm-c0": 0.0, "fm-c0": 1.0}
    assert usage["c0-ddpm-first-tau0.3"] == {"ddpm-c0": 1.0, "fm-c0": 0.0}


def test_a_router_at_chance_is_flagged(toy_run):
    _, res, _ = toy_run
    r = res["router"]
    at_chance = r["accuracy_by_t"][0][1] <= r["training"]["majority_rate"] + 0.05
    assert ("warning" in r) == at_chance


def test_equal_compute_and_metric_provenance(toy_run):
    _, res, _ = toy_run
    experts = {e["name"]: e for e in res["experts"]}
    assert experts["monolithic"]["steps"] == 4 * experts["fm-c0"]["steps"]
    assert sum(experts[f"fm-c{j}"]["train_images"] for j in range(4)) == experts["monolithic"]["train_images"]
    rows = {r["name"]: r for r in res["ensembles"]}
    assert rows["monolithic"]["train_images_seen"] == rows["hom-top2"]["train_images_seen"]
    assert res["classifier"]["id"].startswith("cifar10-resnet@") and 0 <= res["classifier"]["test_accuracy"] <= 1
    assert rows["c0-ddpm-native"]["reference"] == "cluster:0"
    assert rows["c0-ddpm-native"]["n_ref"] == res["clusters"]["test_sizes"][0]
    assert rows["c0-ddpm-native"]["nfe"] == rows["c0-fm-first-tau0.3"]["nfe"] == 3  # Heun 2 steps = 3 NFE
    assert res["metrics"]["diversity"].startswith("intra-class mean pairwise cosine distance")


def test_outputs_are_real_files(toy_run):
    out, res, _ = toy_run
    for name in FILES:
        assert (out / name).exists(), name
        if name.endswith(".png"):
            with Image.open(out / name) as im:
                assert im.size[0] > 200 and im.size[1] > 100
    summary = (out / "summary.md").read_text()
    assert "FD (features: cifar10-resnet@" in summary and "intra-class mean pairwise cosine distance" in summary
    desc = json.loads((out / "experts" / "ddpm-c0" / "expert.json").read_text())
    assert desc["objective"] == "ddpm" and desc["schedule"] == "vp-linear" and desc["cluster"]["id"] == 0
    assert desc["cluster"]["feature_extractor"] == res["clusters"]["feature_extractor"]
    curves = res["loss_curves"]["curves"]
    assert set(curves) == {"fm-c0", "ddpm-c0"} and all(len(c) == 3 for c in curves.values())
