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


# -- two training seeds, two worker processes, through ``python -m hddm_p2p.experiments`` ------------------
@pytest.fixture(scope="module")
def seeds_run(cifar, tmp_path_factory) -> tuple[Path, Path, dict, str]:
    import os
    import subprocess
    import sys

    from tests.experiments.conftest import toy_config

    root = tmp_path_factory.mktemp("seeds")
    config = toy_config(root / "toy-seeds.yaml", train={"seeds": [0, 1], "workers": 2},
                        comparisons=[{"a": "hom-top2", "b": "monolithic"}])
    out, work = root / "out", root / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "hddm_p2p.experiments", "run", str(config), "--out", str(out),
                        "--work", str(work), "--device", "cpu", "--quiet"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, work, json.loads((out / "results.json").read_text()), r.stdout


def test_every_ensemble_is_evaluated_for_every_training_seed(seeds_run):
    _, _, res, stdout = seeds_run
    assert "6/6 configurations evaluated" in stdout and res["training_seeds"] == [0, 1]
    for r in res["ensembles"]:
        assert r["status"] == "ok", r
        assert [x["training_seed"] for x in r["by_training_seed"]] == [0, 1]
        per = r["fd"]["per_training_seed"]
        assert len(per) == 2 and r["fd"]["mean"] == pytest.approx(sum(per) / 2) and r["fd"]["spread"] == "training seeds"
        assert len(r["fd"]["per_seed"]) == 4  # 2 training seeds × 2 sampling seeds
    experts = [(e["name"], e["seed"]) for e in res["experts"]]
    assert len(experts) == 12 and ("monolithic", 1) in experts
    assert [r["training_seed"] for r in res["routers"]] == [0, 1] and res["routers"][1]["training"]["seed"] == 1


def test_seed_zero_in_workers_equals_the_single_seed_run_in_process(seeds_run, toy_run):
    """Workers train exactly what this process trains: the seed-0 experts (and so every seed-0 number) of
    the two-seed run equal the single-seed in-process run; seed 1 is another model."""
    from safetensors.torch import load_file

    out, work, res, _ = seeds_run
    single_out, single, _ = toy_run
    for name in ("fm-c0", "ddpm-c0", "monolithic"):
        a = load_file(str(work / "experts" / "seed0" / name / "model.safetensors"))
        b = load_file(str(single_out / "experts" / name / "model.safetensors"))
        c = load_file(str(work / "experts" / "seed1" / name / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert not torch.equal(a["blocks.0.mlp.fc1.weight"], c["blocks.0.mlp.fc1.weight"])
    mine = {r["name"]: r["by_training_seed"][0]["fd"]["per_seed"] for r in res["ensembles"]}
    assert mine == {r["name"]: r["fd"]["per_seed"] for r in single["ensembles"]}


def test_paired_differences_and_outputs_of_the_two_seed_run(seeds_run):
    out, work, res, _ = seeds_run
    comps = {(c["a"], c["b"]): c for c in res["comparisons"]}
    assert set(comps) == {("hom-top2", "monolithic"), ("c0-fm-first-tau0.3", "c0-ddpm-first-tau0.3")}
    rows = {r["name"]: r for r in res["ensembles"]}
    d = comps[("hom-top2", "monolithic")]["fd"]
    for i, seed in enumerate((0, 1)):
        expect = rows["hom-top2"]["fd"]["per_training_seed"][i] - rows["monolithic"]["fd"]["per_training_seed"][i]
        assert d["per_training_seed"][str(seed)] == pytest.approx(expect)
    summary = (out / "summary.md").read_text()
    assert "## paired differences" in summary and "FD per training seed" in summary and "hom-top2 − monolithic" in summary
    log = (out / "run.log").read_text()
    assert "stage timings:" in log and "trained monolithic (seed 1)" in log
    assert {p.name for p in out.iterdir()} <= set(FILES) | {"run.log"}  # artifacts went to --work
    assert all(p.is_file() for p in out.iterdir()) and len(list(out.iterdir())) <= 8
    assert res["train"]["workers"] == 2 and len({w["pid"] for w in res["train"]["warm_up"]}) == 2
    assert {"data", "classifier", "clusters", "experts", "sampling", "plots"} <= set(res["phases"])


def test_a_failing_compiler_falls_back_to_eager_for_every_expert(cifar, tmp_path, toy_run, monkeypatch):
    from hddm_p2p.experiments import experts as ex, load_config, run_experiment
    from tests.experiments.conftest import toy_config

    monkeypatch.setattr(ex, "COMPILE", {"backend": "no-such-backend"})
    torch._dynamo.reset()
    cfg = load_config(toy_config(tmp_path / "toy.yaml", train={"compile": True}, ensembles=[
        {"name": "monolithic", "experts": ["monolithic"]}], threshold_sweeps=[], loss_curves={"experts": []}))
    res = run_experiment(cfg, tmp_path / "out", "cpu", progress=False)
    assert res["train"]["compiled"] is False and "no-such-backend" in res["train"]["compile_error"]
    assert all(not e["compiled"] for e in res["experts"])
    single_out, single, _ = toy_run
    assert res["ensembles"][0]["fd"] == single["ensembles"][0]["fd"]  # eager, as if compile had not been asked


def test_module_entry_refuses_a_bad_config_in_one_line(tmp_path):
    from hddm_p2p.experiments.__main__ import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 1


def test_an_expert_that_fails_to_train_fails_only_the_evaluations_that_need_it(cifar, tmp_path, monkeypatch):
    from hddm_p2p.errors import NumericalError
    from hddm_p2p.experiments import load_config, run_experiment, runner
    from tests.experiments.conftest import toy_config

    real = runner.train_expert

    def flaky(cfg, job, *args, **kwargs):
        if job.expert.name == "ddpm-c0":
            raise NumericalError("loss became nan at step 6; lower --lr")
        return real(cfg, job, *args, **kwargs)

    monkeypatch.setattr(runner, "train_expert", flaky)
    cfg = load_config(toy_config(tmp_path / "toy.yaml", loss_curves={"experts": []}, ensembles=[
        {"name": "monolithic", "experts": ["monolithic"]},
        {"name": "het1-full", "experts": ["ddpm-c0", "fm-c1", "fm-c2", "fm-c3"], "router": "learned", "mode": "full"}]))
    res = run_experiment(cfg, tmp_path / "out", "cpu", progress=False)
    rows = {r["name"]: r for r in res["ensembles"]}
    assert rows["monolithic"]["status"] == "ok"
    assert rows["het1-full"]["status"] == "failed" and "ddpm-c0" in rows["het1-full"]["reason"]
    assert rows["c0-fm-first-tau0.3"]["status"] == "failed" and "loss became nan" in rows["c0-fm-first-tau0.3"]["reason"]
    assert len(res["failed_experts"]) == 1 and {e["name"] for e in res["experts"]} == {"fm-c0", "fm-c1", "fm-c2",
                                                                                       "fm-c3", "monolithic"}
