"""A small published world shared by the pipeline tests: the digits, three tiny experts of different
objectives and schedules (real training steps, real signatures, a real local store), and their CIDs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

# (name, objective, schedule): the converted ε experts route "low", the flow-matching one "high".
EXPERTS = (("t-ddpm-linear", "ddpm", "vp-linear"), ("t-fm", "fm", "flow-linear"), ("t-ddpm-cosine", "ddpm", "vp-cosine"))


@dataclass(frozen=True)
class World:
    root: Path
    home: Path
    digits: Path
    clusters: Path
    dirs: list[Path]
    cids: list[str]
    did: str


def train_tiny(digits: Path, out: Path, objective: str, schedule: str, cluster: int | None, clusters: Path | None,
               steps: int = 4, **job_kw) -> Path:
    from hddm_p2p.train.job import ExpertJob, train_expert
    from hddm_p2p.train.loop import TrainConfig
    from hddm_p2p.train.objectives import ObjectiveConfig

    job_kw = {"resolution": 8, **job_kw}
    job = ExpertJob(data=str(digits), out=out, objective=ObjectiveConfig(objective, schedule),
                    train=TrainConfig(steps=steps, batch_size=16, lr=1e-3, warmup_steps=1, ckpt_every=10**9),
                    arch="tiny", name=out.name,
                    assignments=clusters / "assignments.json" if clusters else None, cluster_id=cluster, **job_kw)
    return train_expert(job, show_progress=False)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    from hddm_p2p.cluster.pipeline import ClusterJob, run_clustering
    from hddm_p2p.p2p.keys import KeyStore
    from hddm_p2p.p2p.publish import publish_dir
    from hddm_p2p.p2p.store import LocalStore
    from hddm_p2p.p2p.trust import TrustStore
    from hddm_p2p.pipeline.digits import write_digits

    root = tmp_path_factory.mktemp("pipeline-world")
    home, old = root / "home", os.environ.get("HDDM_HOME")
    os.environ["HDDM_HOME"] = str(home)
    try:
        digits, _ = write_digits(root / "digits")
        clusters = root / "clusters"
        run_clustering(ClusterJob(data=str(digits), out=clusters, k=len(EXPERTS), features="pixels"), progress=False)
        dirs = [train_tiny(digits, root / "experts" / name, obj, sched, i, clusters)
                for i, (name, obj, sched) in enumerate(EXPERTS)]
        info = KeyStore().generate("tester")
        TrustStore().add(info.did, "tester")
        cids = [publish_dir(d, LocalStore(), key_name="tester", progress=False).cid for d in dirs]
    finally:
        if old is None:
            os.environ.pop("HDDM_HOME", None)
        else:
            os.environ["HDDM_HOME"] = old
    return World(root, home, digits, clusters, dirs, cids, info.did)


@pytest.fixture
def home(world, monkeypatch) -> Path:
    """``HDDM_HOME`` pointed at the world's home (keys, trust, store, cache) for one test."""
    monkeypatch.setenv("HDDM_HOME", str(world.home))
    return world.home


@pytest.fixture
def threshold_lock(world, home, tmp_path) -> Path:
    from hddm_p2p.pipeline.assemble import AssembleConfig, assemble

    return assemble(AssembleConfig(out=tmp_path / "t.lock.json", experts=tuple(world.cids), router="threshold:0.5",
                                   progress=False)).path
