"""hddm generate as a library call: verified loading, routing modes, threshold override, reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hddm_p2p.pipeline.generate import GenerateConfig, generate, sample_noise


def _gen(lock, out, **kw):
    kw = {"n": 4, "steps": 3, "solver": "euler", "progress": False, **kw}
    return generate(GenerateConfig(ensemble=lock, out=out, **kw))


def _pixels(out):
    return np.stack([np.asarray(Image.open(p)) for p in sorted((out / "samples").glob("*.png"))])


def test_outputs(threshold_lock, tmp_path):
    res = _gen(threshold_lock, tmp_path / "g", n=5, batch_size=2, solver="heun")
    out = tmp_path / "g"
    assert sorted(p.name for p in out.iterdir()) == ["generate.json", "grid.png", "samples", "usage.json", "usage.png"]
    px = _pixels(out)
    assert px.shape == (5, 8, 8, 3) and px.dtype == np.uint8  # the dataset's resolution
    record = json.loads((out / "generate.json").read_text())
    import hashlib
    assert record["lock_sha256"] == hashlib.sha256(threshold_lock.read_bytes()).hexdigest()
    assert record["settings"]["seed"] == 0 and record["router"] == "threshold:0.5"
    usage = json.loads((out / "usage.json").read_text())
    assert usage["t"] == sorted(usage["t"], reverse=True) and len(usage["t"]) == 3  # heun × 3: t = 1, 2/3, 1/3
    assert not list(tmp_path.glob("g.partial-*"))
    assert len(res.usage) == 3


def test_same_lock_and_seed_same_images(threshold_lock, tmp_path):
    _gen(threshold_lock, tmp_path / "a", seed=7)
    _gen(threshold_lock, tmp_path / "b", seed=7)
    _gen(threshold_lock, tmp_path / "c", seed=7, batch_size=1)
    _gen(threshold_lock, tmp_path / "d", seed=8)
    a, b, c, d = (_pixels(tmp_path / x) for x in "abcd")
    assert (a == b).all()
    assert np.abs(a.astype(int) - c).max() <= 1  # batch size changes only float rounding
    assert (a != d).any()


def test_noise_is_per_sample():
    full = sample_noise(3, 0, 6, (3, 8, 8))
    assert torch_equal(full[4:], sample_noise(3, 4, 2, (3, 8, 8)))
    assert not torch_equal(full[:2], sample_noise(4, 0, 2, (3, 8, 8)))


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_modes_change_who_runs(world, home, tmp_path):
    from hddm_p2p.pipeline.assemble import AssembleConfig, assemble

    lock = assemble(AssembleConfig(out=tmp_path / "u.lock.json", experts=tuple(world.cids), router="uniform",
                                   progress=False)).path
    evals = 3  # euler × 3 steps, 4 samples each
    top1 = _gen(lock, tmp_path / "top1", mode="top-1").experts
    assert sum(e["rows"] for e in top1) == 4 * evals  # each sample runs exactly one expert per step
    assert [e["loaded"] for e in top1] == [True, False, False]  # uniform ties go to expert 0; others never read
    full = _gen(lock, tmp_path / "full", mode="full").experts
    assert [e["rows"] for e in full] == [4 * evals] * 3 and all(e["loaded"] for e in full)
    topk = _gen(lock, tmp_path / "topk", mode="top-k", k=2).experts
    assert [e["rows"] for e in topk] == [4 * evals, 4 * evals, 0]


def test_threshold_override(threshold_lock, tmp_path):
    # t ≤ τ goes to the converted ε experts (0, 2), t > τ to flow matching (1); euler never evaluates t = 0
    low_never = _gen(threshold_lock, tmp_path / "a", threshold=0.0).experts
    assert [e["loaded"] for e in low_never] == [False, True, False]
    high_never = _gen(threshold_lock, tmp_path / "b", threshold=1.0).experts
    assert high_never[1]["calls"] == 0 and high_never[0]["calls"] > 0
    record = json.loads((tmp_path / "b" / "generate.json").read_text())
    assert record["router"] == "threshold:1"


def test_published_router_reindexed(world, home, tmp_path):
    from hddm_p2p.p2p.fetch import fetch_manifest
    from hddm_p2p.p2p.publish import publish_dir
    from hddm_p2p.p2p.store import LocalStore
    from hddm_p2p.pipeline.assemble import AssembleConfig, assemble
    from hddm_p2p.train.router import RouterTrainConfig, train_router_for_experts

    descs = [fetch_manifest(LocalStore(), c, progress=False)[0].to_doc() for c in world.cids]
    train_router_for_experts(descs[::-1], world.cids[::-1], str(world.digits), tmp_path / "r",
                             RouterTrainConfig(steps=2, batch_size=16, max_eval=16))
    rcid = publish_dir(tmp_path / "r", LocalStore(), key_name="tester", progress=False).cid
    lock = assemble(AssembleConfig(out=tmp_path / "r.lock.json", experts=tuple(world.cids), router=rcid,
                                   progress=False)).path
    res = _gen(lock, tmp_path / "g", mode="top-1")
    assert sum(e["rows"] for e in res.experts) == 4 * 3
    assert res.router.startswith("router")


def test_offload_on_cpu_gives_same_images(threshold_lock, tmp_path):
    _gen(threshold_lock, tmp_path / "a")
    res = _gen(threshold_lock, tmp_path / "b", offload=True)
    assert (_pixels(tmp_path / "a") == _pixels(tmp_path / "b")).all()
    assert all(e["moves"] == 0 for e in res.experts)  # the CPU is already where experts wait


def test_bf16_runs(threshold_lock, tmp_path):
    _gen(threshold_lock, tmp_path / "a")
    _gen(threshold_lock, tmp_path / "b", dtype="bf16")
    diff = np.abs(_pixels(tmp_path / "a").astype(int) - _pixels(tmp_path / "b"))
    assert diff.mean() < 8  # same images up to bf16 rounding
