"""Expert training jobs on real CIFAR-10 pixels, on the CPU: a job gives the same weights wherever it runs
(this process or a worker), compiled blocks change nothing but speed, and seeds do what they say."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hddm_p2p.experiments import experts as ex
from hddm_p2p.experiments.config import load_config
from hddm_p2p.experiments.experts import ExpertJob, train_expert
from hddm_p2p.experiments.jobs import InlineJobs, PoolJobs, warm_up
from hddm_p2p.experiments.shards import load_shards

from tests.experiments.conftest import toy_config


@pytest.fixture(scope="module")
def setup(cifar, tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    cfg = load_config(toy_config(root / "toy.yaml"))
    data = load_shards(cifar / "train-0000.tar.gz", 32, 160)
    return cfg, data, root


def _train(setup, name: str, seed: int = 0, compile: bool = False, rows=None, steps: int = 4) -> dict:
    cfg, data, root = setup
    e = next(e for e in cfg.experts if e.name == name)
    job = ExpertJob(e, seed, steps, rows, None, root / f"{name}-s{seed}-c{int(compile)}-{steps}")
    bill = train_expert(cfg, job, data.x, data.labels, data.source, "cpu", compile)
    return {"bill": bill, "weights": load_file(str(job.out / "model.safetensors")), "job": job}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_other_seed_other_weights(setup):
    a, b = _train(setup, "ddpm-c0"), _train(setup, "ddpm-c0")
    assert _equal(a["weights"], b["weights"]) and a["bill"]["final_loss"] == b["bill"]["final_loss"]
    c = _train(setup, "ddpm-c0", seed=1)
    assert not torch.equal(a["weights"]["blocks.0.attn.qkv.weight"], c["weights"]["blocks.0.attn.qkv.weight"])
    assert a["bill"]["steps"] == 4 and a["bill"]["images_seen"] == 4 * 32 and a["bill"]["seed"] == 0


def test_rows_select_the_experts_images(setup):
    cfg, data, _ = setup
    rows = torch.arange(0, 160, 2).numpy()  # 80 images: batch 32 of those, not of all 160
    a = _train(setup, "fm-c0", rows=rows)
    assert a["bill"]["train_images"] == 80
    assert not _equal(a["weights"], _train(setup, "fm-c0")["weights"])


def test_compiled_blocks_train_the_same_expert(setup, monkeypatch):
    monkeypatch.setattr(ex, "COMPILE", {"backend": "eager"})  # dynamo's graph capture without a code generator
    torch._dynamo.reset()
    eager, compiled = _train(setup, "fm-c1"), _train(setup, "fm-c1", compile=True)
    assert compiled["bill"]["compiled"] and _equal(eager["weights"], compiled["weights"])
    assert not any(k.startswith("_orig_mod") for k in compiled["weights"])  # keys of an uncompiled model


def test_a_compiler_that_fails_is_reported_not_raised(setup, monkeypatch):
    cfg, data, root = setup
    monkeypatch.setattr(ex, "COMPILE", {"backend": "no-such-backend"})
    torch._dynamo.reset()
    report = warm_up(cfg, "cpu", True)
    assert report["warmup_error"] and "no-such-backend" in report["warmup_error"]
    rate = InlineJobs(cfg, "cpu", True).measure(cfg, data.x, data.labels, True, root / "calib", seconds=0.2)[0]
    assert rate["compile_error"] and rate["steps"] == 0 and not rate["compiled"]
    assert warm_up(cfg, "cpu", False)["warmup_error"] is None


def test_worker_processes_train_what_this_process_trains(setup):
    """Two spawned workers: their step rates are measured together (the barrier), and a job trained in a
    worker writes bitwise the weights of the same job trained here."""
    cfg, data, root = setup
    pool = PoolJobs(cfg, 2, "cpu", False)
    try:
        warm = pool.warm_up_report()
        assert all(w["warmup_error"] is None for w in warm)
        rates = pool.measure(cfg, data.x, data.labels, False, root / "calib", seconds=0.3)
        assert len({r["pid"] for r in rates}) == 2 and all(r["steps"] >= 5 and r["steps_per_s"] > 0 for r in rates)
        here = _train(setup, "fm-c2", seed=1)
        e = next(e for e in cfg.experts if e.name == "fm-c2")
        job = ExpertJob(e, 1, 4, None, None, root / "fm-c2-worker")
        bill = pool.submit(train_expert, cfg, job, data.x, data.labels, data.source, "cpu", False).result()
    finally:
        pool.close()
    assert _equal(load_file(str(Path(bill["path"]) / "model.safetensors")), here["weights"])
    assert bill["final_loss"] == here["bill"]["final_loss"]
