"""``hddm demo``: the whole story on one CPU, from embedded data only — no daemon, no download.

    sklearn digits ─▶ cluster (K=4, 8×8 pixel features, faiss) ─▶ 4 experts, each alone on one cluster:
    two DDPM ε-prediction (vp-linear, vp-cosine) and two flow-matching ─▶ a demo key signs and publishes
    each into a local store ─▶ assemble: fetch + verify, train a router from the published centroids
    ─▶ generate with top-2 routing ─▶ DIR/{samples/*.png, grid.png, usage.png, ensemble.lock.json}
    ─▶ score: how many samples a classifier trained on the real digits recognises (``digit_score``)

All state (keys, trust, store, cache) lives in ``DIR/home`` (``HDDM_HOME``), never in the user's own.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from hddm_p2p.errors import DataError
from hddm_p2p.pipeline.digit_score import Recognisability

MARKER = ".hddm-demo"
# (expert name, objective, schedule): cluster i is trained by recipe i.
RECIPES = (("digits-ddpm-linear", "ddpm", "vp-linear"), ("digits-ddpm-cosine", "ddpm", "vp-cosine"),
           ("digits-fm-a", "fm", "flow-linear"), ("digits-fm-b", "fm", "flow-linear"))


@dataclass(frozen=True)
class DemoConfig:
    """Sizes chosen so the whole demo runs in a few minutes on a 2-core CPU; ``fast()`` is for tests."""

    out: Path = Path("demo-out")
    # Grey digits, one channel: "tiny" (patch 4: 4 tokens of 4×4 values) trains ~1.6× faster per step than
    # "mini" (patch 2) and scored as well at equal steps. (With RGB, tiny could not keep the noise's colour
    # channels apart: coloured speckles on grey digits.)
    arch: str = "tiny"
    channels: int = 1
    steps: int = 8100           # per expert, ~1 min on one core; recognisable samples rise with steps (900: ~30%)
    batch_size: int = 32        # 128 × 900 took longer than 32 × 2700 for fewer recognisable samples
    lr: float = 3e-3            # high for a tiny model and a short run (1e-3 and 6e-3: no better)
    warmup: int = 20
    ema_decay: float = 0.9999   # in effect (1 + step) / (10 + step): an average over the last ~11% of steps
    # Logit-normal t (SD3) concentrates training on mid t, where a digit's shape is decided. The weakest
    # expert alone: 53% → 73% recognisable (uniform → std 1, 2700 steps), 81% → 89% (std 1 → 0.5, 8100
    # steps); the price is some grey speckle in the background (low t is seldom drawn).
    time_sampling: str = "logit-normal"
    logit_std: float = 0.5
    workers: int = 2            # expert trainings run in this many processes, one math thread each
    router_steps: int = 300
    n: int = 64
    sample_steps: int = 20
    solver: str = "heun"
    mode: str = "top-k"
    k: int = 2
    seed: int = 0

    @classmethod
    def fast(cls, out: Path) -> "DemoConfig":
        return cls(out=out, steps=20, warmup=2, router_steps=10, n=8, sample_steps=3, solver="euler")


@dataclass
class DemoResult:
    out: Path
    lock: Path
    experts: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    router: dict[str, Any] = field(default_factory=dict)
    recognisable: Recognisability | None = None

    def to_json(self) -> dict[str, Any]:
        return {"out": str(self.out), "lock": str(self.lock), "experts": self.experts,
                "timings_s": {k: round(v, 2) for k, v in self.timings.items()}, "router": self.router,
                "recognisable": self.recognisable.to_json() if self.recognisable else None,
                "files": {"grid": str(self.out / "grid.png"), "usage": str(self.out / "usage.png"),
                          "samples": str(self.out / "samples")}}


@contextmanager
def hddm_home(path: Path) -> Iterator[Path]:
    """Point ``HDDM_HOME`` at ``path`` for the duration (restored afterwards, also on error)."""
    old = os.environ.get("HDDM_HOME")
    os.environ["HDDM_HOME"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("HDDM_HOME", None)
        else:
            os.environ["HDDM_HOME"] = old


def prepare_out(out: Path) -> None:
    """An empty ``out`` to work in: a previous demo's folder (marked) is replaced, anything else is refused."""
    if out.exists():
        if not (out / MARKER).exists() and any(out.iterdir()):
            raise DataError(f"{out} exists and is not a demo folder; choose another --out or remove it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by `hddm demo`; safe to delete\n")


class Stages:
    """Times named stages and reports each one as it finishes."""

    def __init__(self, console=None):
        self.console, self.timings = console, {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - t0
        if self.console is not None:
            self.console.print(f"[green]✓[/] {name} [dim]({self.timings[name]:.1f}s)[/]", highlight=False)


def cluster_digits(data: Path, work: Path, cfg: DemoConfig) -> dict:
    from hddm_p2p.cluster.pipeline import ClusterJob, run_clustering

    return run_clustering(ClusterJob(data=str(data), out=work / "clusters", k=len(RECIPES), features="pixels",
                                     seed=cfg.seed), progress=False)


def expert_jobs(data: Path, work: Path, cfg: DemoConfig) -> list:
    """One ``ExpertJob`` per recipe: expert i trains alone on cluster i."""
    from hddm_p2p.train.job import ExpertJob
    from hddm_p2p.train.loop import TrainConfig
    from hddm_p2p.train.objectives import ObjectiveConfig

    jobs = []
    for i, (name, objective, schedule) in enumerate(RECIPES):
        train = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=cfg.warmup,
                            ema_decay=cfg.ema_decay, ckpt_every=10**9, log_every=max(1, cfg.steps // 20),
                            seed=cfg.seed + i)
        obj = ObjectiveConfig(objective, schedule, time_sampling=cfg.time_sampling, logit_std=cfg.logit_std)
        jobs.append(ExpertJob(data=str(data), out=work / "experts" / name, objective=obj, train=train, arch=cfg.arch,
                              resolution=8, channels=cfg.channels, assignments=work / "clusters" / "assignments.json",
                              cluster_id=i, name=name))
    return jobs


def _train_alone(job) -> Path:
    """One expert in a worker process, on one math thread (the workers share the cores)."""
    import torch

    from hddm_p2p.train.job import train_expert

    torch.set_num_threads(1)
    with redirect_stdout(io.StringIO()):  # hidden progress bars still print blank lines; errors are raised
        return train_expert(job, show_progress=False)


def train_experts(data: Path, work: Path, cfg: DemoConfig, console=None) -> list[Path]:
    """Train the experts in ``cfg.workers`` processes (in this one when 1); their directories in recipe order."""
    from hddm_p2p.train.job import train_expert

    jobs = expert_jobs(data, work, cfg)
    if cfg.workers <= 1:
        return [train_expert(job, console=console, show_progress=console is not None) for job in jobs]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if console is not None:
        console.print(f"  training {len(jobs)} experts in {cfg.workers} processes, {cfg.steps} steps each …",
                      highlight=False)
    # spawn, not fork: the parent has already run faiss's OpenMP threads, which a forked child can deadlock on
    with ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_train_alone, job): job for job in jobs}
        for f in as_completed(futures):
            done = f.result()  # re-raises a worker's error here
            if console is not None:
                t = json.loads((done / "expert.json").read_text())["training"]
                console.print(f"  {futures[f].name}: loss {t['final_loss']:.3f}, {t['wall_time_s']:.0f}s",
                              highlight=False)
    return [Path(job.out) for job in jobs]


def publish_experts(dirs: list[Path]) -> list[str]:
    """A fresh demo key signs each expert into the local store; the demo trusts its own key."""
    from hddm_p2p.p2p.keys import KeyStore
    from hddm_p2p.p2p.publish import publish_dir
    from hddm_p2p.p2p.store import LocalStore
    from hddm_p2p.p2p.trust import TrustStore

    info = KeyStore().generate("demo")
    TrustStore().add(info.did, "demo")
    store = LocalStore()
    return [publish_dir(d, store, key_name="demo", progress=False).cid for d in dirs]


def _generate(lock: Path, out: Path, cfg: DemoConfig, progress: bool):
    from hddm_p2p.pipeline.generate import GenerateConfig, generate

    tmp = out / ".generate"
    res = generate(GenerateConfig(ensemble=lock, out=tmp, n=cfg.n, steps=cfg.sample_steps, solver=cfg.solver,
                                  mode=cfg.mode, k=cfg.k, seed=cfg.seed, progress=progress))
    for item in ("samples", "grid.png", "usage.png", "usage.json", "generate.json"):
        os.replace(tmp / item, out / item)
    tmp.rmdir()
    return res


def run_demo(cfg: DemoConfig, console=None) -> DemoResult:
    """Run every stage into ``cfg.out``; returns what the summary shows."""
    from hddm_p2p.pipeline.assemble import AssembleConfig, assemble
    from hddm_p2p.pipeline.digit_score import score_folder
    from hddm_p2p.pipeline.digits import write_digits

    out = Path(cfg.out)
    prepare_out(out)
    stage, work, progress = Stages(console), out / "work", console is not None
    with hddm_home(out / "home"):
        with stage("data: sklearn digits → image folder"):
            data, _ = write_digits(work / "digits")
        with stage("cluster: K=4 on 8×8 pixel features (faiss)"):
            summary = cluster_digits(data, work, cfg)
        with stage("train: 4 experts, each alone on its cluster"):
            dirs = train_experts(data, work, cfg, console)
        with stage("publish: sign manifests, add to the local store"):
            cids = publish_experts(dirs)
        with stage("assemble: fetch + verify, train router from centroids"):
            res = assemble(AssembleConfig(out=out / "ensemble.lock.json", experts=tuple(cids), router="train",
                                          data=str(data), router_steps=cfg.router_steps, seed=cfg.seed,
                                          name="digits-demo", progress=False))
        with stage(f"generate: {cfg.n} samples, {cfg.mode} (k={cfg.k}), {cfg.solver} × {cfg.sample_steps}"):
            gen = _generate(res.path, out, cfg, progress)
        with stage("score: classify the samples with a model of the real digits"):
            recognisable = score_folder(out / "samples")
    experts = [{**e, "cluster_size": summary["sizes"][i], "mean_weight": gen.usage[i],
                "final_loss": m.training.final_loss}
               for i, (e, m) in enumerate(zip(gen.experts, res.manifests))]
    return DemoResult(out, res.path, experts, stage.timings, res.router_detail, recognisable)
