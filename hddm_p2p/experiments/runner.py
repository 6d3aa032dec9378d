"""``run_experiment``: one config in, ``results.json`` + ``summary.md`` + PNGs out.

Phases, each timed: data → FD classifier → features and clusters → experts (equal settings) →
learned router → clean-sample error curves → every ensemble, for every sampling seed (FD and
diversity). ``results.json`` is rewritten atomically after each configuration, so an interrupted or
budget-limited run still leaves every finished number; configurations not started before
``budget_s`` are listed with status ``skipped``, a configuration that fails numerically with ``failed``.
"""

from __future__ import annotations

import json
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import hddm_p2p
from hddm_p2p.errors import HddmError, SpecError
from hddm_p2p.experiments import generate as gen
from hddm_p2p.experiments import plots
from hddm_p2p.experiments.config import EnsembleConfig, ExperimentConfig
from hddm_p2p.experiments.experts import steps_per_unit, train_expert
from hddm_p2p.experiments.loss_curves import error_curves, plot_error_curves
from hddm_p2p.experiments.metrics import DIVERSITY_METRIC, FD_METRIC, class_diversity, fd, predict
from hddm_p2p.experiments.prepare import (features, load_data, make_clusters, pixel_features, reference_stats,
                                          train_fd_classifier)
from hddm_p2p.experiments.report import summary_markdown
from hddm_p2p.experiments.routers import train_cluster_router
from hddm_p2p.p2p._files import atomic_write

FILES = ("results.json", "summary.md", "fd_diversity.png", "threshold.png", "x0_error.png", "samples.png",
         "router_accuracy.png")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"--device {name} requested but CUDA is not available here; use --device cpu")
    return dev


def _stats(values: list[float]) -> dict:
    return {"per_seed": [round(v, 6) for v in values], "mean": float(np.mean(values)), "std": float(np.std(values))}


class Run:
    """State of one experiment run; ``execute()`` runs every phase and returns the results document."""

    def __init__(self, cfg: ExperimentConfig, out: Path, device: torch.device, console: Console, progress: bool):
        self.cfg, self.out, self.device, self.console, self.show = cfg, Path(out), device, console, progress
        self.t0 = time.perf_counter()
        self.experts: dict = {}
        self.router = None
        self.sheet: dict[str, torch.Tensor] = {}
        self.res: dict = {"name": cfg.name, "kind": "hddm-experiment/1", "config": asdict(cfg), "phases": {},
                          "metrics": {"fd": FD_METRIC, "diversity": DIVERSITY_METRIC},
                          "environment": _environment(device), "ensembles": []}

    # -- bookkeeping --------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    @contextmanager
    def phase(self, name: str):
        t = time.perf_counter()
        self.console.log(f"[bold]{name}[/] …")
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.res["phases"][name] = round(time.perf_counter() - t, 2)
        self.console.log(f"[bold]{name}[/] done in {self.res['phases'][name]:.1f} s")

    def bar(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=self.console, disable=not self.show, transient=True)

    def save(self) -> None:
        self.res["wall_s"] = round(self.elapsed(), 2)
        atomic_write(self.out / "results.json", (json.dumps(self.res, indent=1) + "\n").encode())
        atomic_write(self.out / "summary.md", summary_markdown(self.res).encode())

    # -- phases -------------------------------------------------------------------------------------
    def execute(self) -> dict:
        cfg = self.cfg
        with self.phase("data"):
            self.train, self.test = load_data(cfg.data)
        with self.phase("classifier"):
            self.extractor = train_fd_classifier(cfg.classifier, self.train, self.test, self.out / "classifier",
                                                 self.device, self.show)
            self.res["classifier"] = {"id": self.extractor.id, **self.extractor.info,
                                      "recipe": cfg.classifier.recipe, "overrides": cfg.classifier.overrides}
        with self.phase("clusters"):
            self._cluster()
        self.save()
        with self.phase("experts"):
            self._train_experts()
        self.save()
        if any(e.router.kind == "learned" for e in cfg.all_ensembles()):
            with self.phase("router"):
                self.router, desc = train_cluster_router(cfg, self.train, self.clusters, self.out / "router", self.device)
                self.res["router"] = {k: desc[k] for k in ("architecture", "training", "accuracy_by_t")}
                self._check_router()
        if cfg.loss_curves.experts:
            with self.phase("loss_curves"):
                self._loss_curves()
        self.save()
        with self.phase("sampling"):
            for e in cfg.all_ensembles():
                self.res["ensembles"].append(self._evaluate(e))
                self.save()
        self._plots()
        self.save()
        return self.res

    def _check_router(self) -> None:
        """Flag a router no better than the majority class on clean held-out images: routed numbers then
        measure whichever expert it prefers, not routing (seen on 2026-11-27 with 600 steps at lr 3e-4)."""
        acc0 = self.res["router"]["accuracy_by_t"][0][1]
        chance = self.res["router"]["training"]["majority_rate"]
        if acc0 <= chance + 0.05:
            msg = (f"router held-out accuracy at t=0 is {acc0:.3f}, not above the majority rate {chance:.3f}: "
                   "it has not learned the clusters; routed configurations are not evidence about routing")
            self.res["router"]["warning"] = msg
            self.console.log(f"[yellow]warning:[/] {msg}")

    def _cluster(self) -> None:
        cfg = self.cfg
        self.f_train = features(self.extractor, self.train.x)
        self.f_test = features(self.extractor, self.test.x)
        if cfg.clusters.features == "classifier":
            ct, cs, fid = self.f_train, self.f_test, self.extractor.id
        else:
            ct, cs, fid = pixel_features(self.train.x), pixel_features(self.test.x), "pixels-8x8"
        self.clusters = make_clusters(cfg.clusters, ct, cs, fid)
        self.refs = reference_stats(self.f_test, self.clusters, self.extractor)
        self.res["clusters"] = {"k": self.clusters.k, "levels": self.clusters.levels, "feature_extractor": fid,
                                "train_sizes": self.clusters.sizes("train"), "test_sizes": self.clusters.sizes("test"),
                                "assignments_sha256": self.clusters.assignments_sha256(self.train.keys),
                                "class_histograms": self._class_histograms()}

    def _class_histograms(self) -> list[list[int]]:
        """CIFAR-10 class counts (10,) of each cluster's training images: what the clusters mean."""
        labels = self.train.labels.numpy()
        return [np.bincount(labels[self.clusters.train == j], minlength=10).tolist() for j in range(self.clusters.k)]

    def _train_experts(self) -> None:
        cfg = self.cfg
        steps, dt = steps_per_unit(cfg, self.train, str(self.device), self.out / "calibration")
        self.res["train"] = {"steps_per_unit": steps, "measured_s_per_step": dt, "batch_size": cfg.train.batch_size}
        self.console.log(f"experts: {steps} steps per unit of compute" + (f" ({dt * 1e3:.1f} ms/step)" if dt else ""))
        for e in cfg.experts:
            with self.bar() as bar:
                task = bar.add_task(f"train {e.name}", total=int(round(e.compute * steps)))
                te = train_expert(e, cfg, self.train, self.clusters, steps, self.out / "experts" / e.name,
                                  str(self.device), lambda step, *_: bar.update(task, completed=step))
            self.experts[e.name] = te
            self.console.log(f"trained {e.name}: {te.steps} steps, {te.wall_s:.1f} s, loss {te.final_loss:.4f}")
        self.res["experts"] = [te.summary() for te in self.experts.values()]

    def _loss_curves(self) -> None:
        lc = self.cfg.loss_curves
        j = int(lc.reference.split(":")[1]) if lc.reference.startswith("cluster:") else None
        x = self.test.x if j is None else self.test.x[torch.from_numpy(self.clusters.test == j)]
        x0 = x[:lc.n].float() / 127.5 - 1  # (n, 3, H, W) in [−1, 1]
        ts = np.linspace(0.02, 0.98, lc.points).round(4).tolist()
        curves = error_curves({n: self.experts[n] for n in lc.experts}, x0, ts)
        labels = {n: f"{n} ({self.experts[n].config.objective}, {self.experts[n].config.schedule})" for n in curves}
        self.res["loss_curves"] = {"metric": "mean squared clean-sample error E‖x̂0 − x0‖² per pixel",
                                   "reference": lc.reference, "n": int(len(x0)), "curves": curves}
        plot_error_curves(curves, labels, self.out / "x0_error.png")

    def _evaluate(self, e: EnsembleConfig) -> dict:
        cfg, s = self.cfg, self.cfg.sampling
        row = {"name": e.name, "group": e.group, "experts": list(e.experts), "router": asdict(e.router), "mode": e.mode,
               "k": e.k, "sampler": e.sampler, "reference": e.reference, "n_ref": self.refs[e.reference].n,
               "seeds": list(s.seeds), "n_per_seed": s.n, "nfe": gen.nfe(e, cfg),
               "train_images_seen": sum(self.experts[n].images_seen for n in e.experts)}
        if cfg.budget_s is not None and self.elapsed() > cfg.budget_s:
            return {**row, "status": "skipped", "reason": f"time budget of {cfg.budget_s:.0f} s used up"}
        t = time.perf_counter()
        try:
            fds, divs, class_std, usage = self._sample_seeds(e)
        except HddmError as err:
            self.console.log(f"[red]{e.name} failed:[/] {err}")
            return {**row, "status": "failed", "reason": str(err)}
        row.update(status="ok", fd=_stats(fds), diversity={**_stats(divs), "class_std": class_std},
                   expert_usage=usage, wall_s=round(time.perf_counter() - t, 2))
        self.console.log(f"{e.name}: {FD_METRIC} {row['fd']['mean']:.2f} ± {row['fd']['std']:.2f}, "
                         f"diversity {row['diversity']['mean']:.4f} ({row['wall_s']:.0f} s)")
        return row

    def _sample_seeds(self, e: EnsembleConfig) -> tuple[list[float], list[float], list[float], dict]:
        s = self.cfg.sampling
        sampler, usage = gen.make_sampler(e, self.cfg, self.experts, self.router)
        shape = tuple(self.train.x.shape[1:])
        fds, divs, class_std = [], [], []
        with self.bar() as bar:
            task = bar.add_task(f"sample {e.name}", total=s.n * len(s.seeds))
            for seed in s.seeds:
                imgs = gen.generate(sampler, s.n, seed, s.batch, shape, self.device, lambda k: bar.advance(task, k))
                f = features(self.extractor, imgs)
                fds.append(fd(f, self.refs[e.reference]))
                mean, std, _ = class_diversity(f, predict(self.extractor, f))
                divs.append(mean)
                class_std.append(std)
                if e.name not in self.sheet:
                    self.sheet[e.name] = imgs[:16]
        return fds, divs, class_std, usage.shares() if usage else {}

    def _plots(self) -> None:
        clf = self.res["classifier"]
        fd_label = f"{FD_METRIC} ({clf['id']}, test acc. {clf['test_accuracy']:.1%})"
        rows = self.res["ensembles"]
        plots.plot_bars([r for r in rows if r["group"] != "threshold"], self.out / "fd_diversity.png", self.cfg.name,
                        fd_label)
        plots.plot_threshold([r for r in rows if r["group"] == "threshold"], self.out / "threshold.png", fd_label)
        plots.sample_sheet(self.sheet, self.out / "samples.png")
        acc = self.out / "router" / "accuracy_by_t.png"
        if acc.exists():
            atomic_write(self.out / "router_accuracy.png", acc.read_bytes())


def _environment(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"device": name, "torch": torch.__version__, "python": platform.python_version(),
            "hddm": hddm_p2p.__version__}


def run_experiment(cfg: ExperimentConfig, out: Path, device: str = "auto", console: Console | None = None,
                   progress: bool = True) -> dict:
    """Run every phase of ``cfg`` on ``device``, writing into ``out``; returns the results document."""
    dev = resolve_device(device)
    Path(out).mkdir(parents=True, exist_ok=True)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Run(cfg, Path(out), dev, console or Console(stderr=True), progress).execute()
