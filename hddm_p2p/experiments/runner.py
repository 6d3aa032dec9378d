"""``run_experiment``: one config in, ``results.json`` + ``summary.md`` + PNGs out.

Stages, each timed (``phases``; ``timeline`` has their start and end, since some overlap): data →
FD classifier → features and clusters → calibration (the step rate, when ``train.budget_s`` fits the
steps) → experts, one job per (expert, training seed), in this process or in ``train.workers`` worker
processes → the learned router of each training seed (here, while the workers train) → clean-sample
error curves and every ensemble × training seed, each over every sampling seed (FD and diversity).

An evaluation starts as soon as its experts and router exist and a worker is idle (so sampling fills
the device while the last, longest jobs train), most important first (config order). ``results.json``
is rewritten atomically after each one, so an interrupted or budget-limited run still leaves every
finished number; evaluations not started before ``budget_s`` are reported ``skipped``, one that fails
numerically ``failed``. Large artifacts (classifier, experts, routers) go to ``work`` (default: ``out``).
"""

from __future__ import annotations

import json
import platform
import time
from concurrent.futures import FIRST_COMPLETED, wait
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import hddm_p2p
from hddm_p2p.errors import HddmError, SpecError
from hddm_p2p.experiments import aggregate
from hddm_p2p.experiments import generate as gen
from hddm_p2p.experiments import plots
from hddm_p2p.experiments.config import EnsembleConfig, ExperimentConfig
from hddm_p2p.experiments.experts import describe_error, fit_steps, load_trained, ordered_jobs, train_expert
from hddm_p2p.experiments.jobs import InlineJobs, configure_device, make_jobs
from hddm_p2p.experiments.loss_curves import error_curves, plot_error_curves
from hddm_p2p.experiments.metrics import DIVERSITY_METRIC, FD_METRIC, score
from hddm_p2p.experiments.prepare import (features, load_data, make_clusters, pixel_features, reference_stats,
                                          train_fd_classifier)
from hddm_p2p.experiments.report import summary_markdown, timings_line
from hddm_p2p.experiments.routers import train_cluster_router
from hddm_p2p.p2p._files import atomic_write

FILES = ("results.json", "summary.md", "fd_diversity.png", "threshold.png", "x0_error.png", "samples.png",
         "router_accuracy.png")
LOSS_CURVES = "loss_curves"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"--device {name} requested but CUDA is not available here; use --device cpu")
    return dev


class Run:
    """State of one experiment run; ``execute()`` runs every stage and returns the results document."""

    def __init__(self, cfg: ExperimentConfig, out: Path, device: torch.device, console: Console, progress: bool,
                 work: Path | None = None):
        self.cfg, self.out, self.device, self.console, self.show = cfg, Path(out), device, console, progress
        self.work = Path(work) if work is not None else self.out
        self.seeds = cfg.train.training_seeds
        self.t0 = time.perf_counter()
        self.experts: dict[int, dict] = {s: {} for s in self.seeds}   # training seed → name → TrainedExpert
        self.routers: dict[int, object] = {}
        self.records: dict[tuple[str, int], dict] = {}
        self.failed: dict[tuple[str, int], str] = {}                   # (expert, seed) → why its training failed
        self.images_seen: dict[str, int] = {}
        self.sheet: dict[str, torch.Tensor] = {}
        self.res: dict = {"name": cfg.name, "kind": "hddm-experiment/2", "config": asdict(cfg), "phases": {},
                          "timeline": [], "metrics": {"fd": FD_METRIC, "diversity": DIVERSITY_METRIC},
                          "environment": _environment(device), "training_seeds": list(self.seeds), "ensembles": []}

    # -- bookkeeping --------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def log(self, msg: str) -> None:
        self.console.log(f"[{self.elapsed():6.1f} s] {msg}")

    def mark(self, name: str, start: float, end: float | None = None) -> None:
        """Record stage ``name`` as [start, end] seconds since the run began; its wall time in ``phases``."""
        end = self.elapsed() if end is None else end
        self.res["timeline"].append([name, round(start, 2), round(end, 2)])
        self.res["phases"][name] = round(self.res["phases"].get(name, 0) + end - start, 2)

    @contextmanager
    def phase(self, name: str):
        start = self.elapsed()
        self.log(f"[bold]{name}[/] …")
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.mark(name, start)
        self.log(f"[bold]{name}[/] done in {self.res['phases'][name]:.1f} s")

    def bar(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=self.console, disable=not self.show, transient=True)

    def save(self) -> None:
        self.res["wall_s"] = round(self.elapsed(), 2)
        self.res["ensembles"] = rows = self._rows()
        self.res["comparisons"] = aggregate.comparisons(rows, self.cfg.all_comparisons())
        atomic_write(self.out / "results.json", (json.dumps(self.res, indent=1) + "\n").encode())
        atomic_write(self.out / "summary.md", summary_markdown(self.res).encode())

    # -- stages -------------------------------------------------------------------------------------
    def execute(self) -> dict:
        cfg = self.cfg
        jobs = make_jobs(cfg, str(self.device), cfg.train.compile)  # workers warm up during data + classifier
        try:
            with self.phase("data"):
                self.train, self.test = load_data(cfg.data)
            with self.phase("classifier"):
                self.extractor = train_fd_classifier(cfg.classifier, self.train, self.test, self.work / "classifier",
                                                     self.device, self.show)
                self.res["classifier"] = {"id": self.extractor.id, **self.extractor.info,
                                          "recipe": cfg.classifier.recipe, "overrides": cfg.classifier.overrides}
            with self.phase("clusters"):
                self._cluster()
            self.save()
            steps, compile = self._steps(jobs)
            futures = self._submit(jobs, steps, compile)
            self._train_routers()
            self._evaluate_all(futures, jobs)
        except BaseException:
            jobs.close(cancel=True)
            raise
        jobs.close()
        with self.phase("plots"):
            self._plots()
        self.save()
        self.log("stage timings: " + timings_line(self.res))
        return self.res

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

    # -- experts ------------------------------------------------------------------------------------
    def _steps(self, jobs) -> tuple[int, bool]:
        """(steps per unit of compute, compile): fixed, or fitted to ``train.budget_s`` from the step rate
        every worker gets while all train at once; compile falls back to eager for all if it fails anywhere."""
        t, compile = self.cfg.train, self.cfg.train.compile
        self.res["train"] = {"batch_size": t.batch_size, "training_seeds": list(self.seeds), "workers": jobs.workers}
        warm = jobs.warm_up_report()
        if warm:
            self.res["train"]["warm_up"] = warm
            self.log("warm-up (CUDA context" + (", torch.compile of the blocks" if compile else "") + "): " +
                     ", ".join(f"pid {w['pid']} {w['warmup_s']:.1f} s" for w in warm))
        errors = [w["warmup_error"] for w in warm if w["warmup_error"]]
        if compile and errors:
            self.log(f"[yellow]torch.compile failed ({errors[0]}); every expert trains eager[/]")
            self.res["train"]["compile_error"], compile = errors[0], False
        steps = t.steps
        if t.budget_s is not None:
            with self.phase("calibration"):
                calib = jobs.measure(self.cfg, self.train.x, self.train.labels, compile, self.work / "calibration")
                if compile and any(c["compile_error"] for c in calib):
                    err = next(c["compile_error"] for c in calib if c["compile_error"])
                    self.log(f"[yellow]torch.compile failed ({err}); every expert trains eager[/]")
                    self.res["train"]["compile_error"], compile = err, False
                    calib = jobs.measure(self.cfg, self.train.x, self.train.labels, False, self.work / "calibration")
                if any(c["compile_error"] for c in calib):
                    raise HddmError(f"calibration step failed: {next(c['compile_error'] for c in calib)}")
            sizes = [e.compute for e in self.cfg.experts for _ in self.seeds]
            steps, fit = fit_steps(t.budget_s, [c["steps_per_s"] for c in calib], sizes)
            self.res["train"].update(calibration=calib, fit=fit, measured_s_per_step=fit["s_per_step_each"])
            self.log(f"calibration: {fit['workers']} worker(s) at {fit['steps_per_s_each']} steps/s "
                     f"({fit['steps_per_s_total']} steps/s together); {steps} steps per unit of compute, "
                     f"expected expert training {fit['expected_training_s']:.0f} s")
        self.res["train"].update(steps_per_unit=steps, compiled=compile)
        return steps, compile

    def _submit(self, jobs, steps: int, compile: bool) -> dict:
        """Submit every (expert, training seed), longest first; returns {(name, seed): (job, future)}."""
        cfg, start = self.cfg, self.elapsed()
        rows = {j: np.flatnonzero(self.clusters.train == j) for j in range(self.clusters.k)}
        rows[None] = None
        sha = self.res["clusters"]["assignments_sha256"]
        blocks = {j: self.clusters.expert_block(j, sha) for j in range(self.clusters.k)}
        blocks[None] = None
        ordered = ordered_jobs(cfg, steps, rows, blocks, self.work / "experts")
        self.log(f"experts: {len(ordered)} jobs ({len(cfg.experts)} experts × {len(self.seeds)} training seeds), "
                 f"{steps} steps per unit of compute, {jobs.workers} worker(s), compile {compile}")
        args = (self.train.x, self.train.labels, self.train.source, str(self.device), compile)
        if not isinstance(jobs, InlineJobs):
            self.train.x.share_memory_(), self.train.labels.share_memory_()  # once; each job gets a handle
        futures = {}
        for job in ordered:
            n = len(job.rows) if job.rows is not None else len(self.train)
            self.images_seen[job.expert.name] = job.steps * min(cfg.train.batch_size, n)
            if isinstance(jobs, InlineJobs):
                with self.bar() as bar:
                    task = bar.add_task(f"train {job.expert.name} (seed {job.seed})", total=job.steps)
                    futures[job.key] = (job, jobs.submit(train_expert, cfg, job, *args,
                                                         progress=lambda step, *_: bar.update(task, completed=step)))
            else:
                futures[job.key] = (job, jobs.submit(train_expert, cfg, job, *args))
        self.experts_start = start
        self._collect(futures)
        return futures

    def _collect(self, futures: dict) -> None:
        """Load every expert whose job has finished; a job that failed is recorded, and the evaluations
        that need its expert fail with its error (the others go on)."""
        for (name, seed), (job, f) in futures.items():
            if f.done() and name not in self.experts[seed] and (name, seed) not in self.failed:
                try:
                    bill = f.result()
                except Exception as err:  # NumericalError, a worker that died (BrokenProcessPool), ...
                    self.failed[(name, seed)] = f"training {name} (seed {seed}) failed: {describe_error(err)}"
                    self.log(f"[red]{self.failed[(name, seed)]}[/]")
                    continue
                self.experts[seed][name] = load_trained(job, bill, self.device)
                self.log(f"trained {name} (seed {seed}): {bill['steps']} steps, {bill['wall_s']:.1f} s "
                         f"({bill['ms_per_step']:.1f} ms/step), loss {bill['final_loss']:.4f}")
        if "experts" not in self.res["phases"] and all(f.done() for _, f in futures.values()):
            self.mark("experts", self.experts_start)
            self.res["experts"] = [self.experts[s][e.name].bill for e in self.cfg.experts for s in self.seeds
                                   if e.name in self.experts[s]]
            if self.failed:
                self.res["failed_experts"] = list(self.failed.values())
            self.save()

    def _train_routers(self) -> None:
        if not any(e.router.kind == "learned" for e in self.cfg.all_ensembles()):
            return
        descs = []
        for seed in self.seeds:
            with self.phase(f"router seed {seed}" if len(self.seeds) > 1 else "router"):
                where = self.work / "router" if len(self.seeds) == 1 else self.work / "router" / f"seed{seed}"
                self.routers[seed], desc = train_cluster_router(self.cfg, self.train, self.clusters, where,
                                                                self.device, seed)
                descs.append(self._check_router({"training_seed": seed, **{k: desc[k] for k in
                                                 ("architecture", "training", "accuracy_by_t")}}))
        self.res["routers"] = descs
        self.res["router"] = descs[0]  # the first training seed's, as in single-seed results

    def _check_router(self, r: dict) -> dict:
        """Flag a router no better than the majority class on clean held-out images: routed numbers then
        measure whichever expert it prefers, not routing (seen on 2026-11-27 with 600 steps at lr 3e-4)."""
        acc0, chance = r["accuracy_by_t"][0][1], r["training"]["majority_rate"]
        if acc0 <= chance + 0.05:
            r["warning"] = (f"router (training seed {r['training_seed']}) held-out accuracy at t=0 is {acc0:.3f}, not "
                            f"above the majority rate {chance:.3f}: it has not learned the clusters; routed "
                            "configurations are not evidence about routing")
            self.log(f"[yellow]warning:[/] {r['warning']}")
        return r

    # -- evaluation ---------------------------------------------------------------------------------
    def _evaluate_all(self, futures: dict, jobs) -> None:
        """Evaluate every item when its experts exist and a worker is idle, most important first."""
        cfg = self.cfg
        items = [(LOSS_CURVES, s) for s in self.seeds if cfg.loss_curves.experts]
        items += [(e, s) for e in cfg.all_ensembles() for s in self.seeds]
        while items:
            self._collect(futures)
            running = [f for _, f in futures.values() if not f.done()]
            if cfg.budget_s is not None and self.elapsed() > cfg.budget_s:
                for item in items:
                    self._skip(item, f"time budget of {cfg.budget_s:.0f} s used up")
                if running:
                    self.log(f"[yellow]budget used up with {len(running)} expert job(s) unfinished; stopping them[/]")
                    jobs.close(cancel=True)
                break
            for item in [i for i in items if self._missing(i)]:
                items.remove(item)
                self._fail(item, self._missing(item))
            ready = [i for i in items if self._ready(i)] if len(running) < jobs.workers else []
            if not ready:
                if not running:
                    raise HddmError(f"nothing left to train, but {items[0][0]!r} is missing an expert or router")
                wait(running, timeout=5, return_when=FIRST_COMPLETED)
                continue
            items.remove(ready[0])
            self._run_item(*ready[0])
            self.save()

    def _ready(self, item) -> bool:
        what, seed = item
        names = self.cfg.loss_curves.experts if what == LOSS_CURVES else what.experts
        needs_router = what != LOSS_CURVES and what.router.kind == "learned"
        return all(n in self.experts[seed] for n in names) and (not needs_router or seed in self.routers)

    def _missing(self, item) -> str | None:
        """Why ``item`` can never run (an expert it needs failed to train), or None."""
        what, seed = item
        names = self.cfg.loss_curves.experts if what == LOSS_CURVES else what.experts
        return next((self.failed[(n, seed)] for n in names if (n, seed) in self.failed), None)

    def _skip(self, item, reason: str, status: str = "skipped") -> None:
        what, seed = item
        if what != LOSS_CURVES:
            self.records[(what.name, seed)] = {"training_seed": seed, "status": status, "reason": reason}

    def _fail(self, item, reason: str) -> None:
        self._skip(item, reason, "failed")

    def _run_item(self, what, seed: int) -> None:
        start = self.elapsed()
        if what == LOSS_CURVES:
            self._loss_curves(seed)
            self.mark(LOSS_CURVES, start)
            return
        self.records[(what.name, seed)] = self._evaluate(what, seed)
        self.mark("sampling", start)

    def _loss_curves(self, seed: int) -> None:
        lc = self.cfg.loss_curves
        j = int(lc.reference.split(":")[1]) if lc.reference.startswith("cluster:") else None
        x = self.test.x if j is None else self.test.x[torch.from_numpy(self.clusters.test == j)]
        x0 = x[:lc.n].float() / 127.5 - 1  # (n, 3, H, W) in [−1, 1]
        ts = np.linspace(0.02, 0.98, lc.points).round(4).tolist()
        experts = self.experts[seed]
        curves = error_curves({n: experts[n] for n in lc.experts}, x0, ts)
        doc = self.res.setdefault("loss_curves", {"metric": "mean squared clean-sample error E‖x̂0 − x0‖² per pixel",
                                                  "reference": lc.reference, "n": int(len(x0)), "curves": curves,
                                                  "training_seed": seed, "by_training_seed": {}})
        doc["by_training_seed"][str(seed)] = curves
        if doc["training_seed"] == seed:  # the figure shows the first training seed evaluated
            labels = {n: f"{n} ({experts[n].config.objective}, {experts[n].config.schedule})" for n in curves}
            plot_error_curves(curves, labels, self.out / "x0_error.png")

    def _rows(self) -> list[dict]:
        """One row per ensemble, in config order, over every training seed (``aggregate.combine``)."""
        return [aggregate.combine(self._base(e), [self.records.get((e.name, s)) for s in self.seeds], self.seeds)
                for e in self.cfg.all_ensembles()]

    def _base(self, e: EnsembleConfig) -> dict:
        cfg = self.cfg
        return {"name": e.name, "group": e.group, "experts": list(e.experts), "router": asdict(e.router),
                "mode": e.mode, "k": e.k, "sampler": e.sampler, "reference": e.reference,
                "n_ref": self.refs[e.reference].n if hasattr(self, "refs") else None, "seeds": list(cfg.sampling.seeds),
                "n_per_seed": cfg.sampling.n, "nfe": gen.nfe(e, cfg),
                "train_images_seen": (sum(self.images_seen[n] for n in e.experts)
                                      if all(n in self.images_seen for n in e.experts) else None)}

    def _evaluate(self, e: EnsembleConfig, seed: int) -> dict:
        """One ensemble with the experts (and router) of one training seed, over every sampling seed."""
        s, t = self.cfg.sampling, time.perf_counter()
        try:
            sampler, usage = gen.make_sampler(e, self.cfg, self.experts[seed], self.routers.get(seed))
            with self.bar() as bar:
                task = bar.add_task(f"sample {e.name} (training seed {seed})", total=s.n * len(s.seeds))
                images = gen.generate(sampler, s.n, s.seeds, s.batch, tuple(self.train.x.shape[1:]), self.device,
                                      lambda k: bar.advance(task, k))
        except HddmError as err:
            self.log(f"[red]{e.name} (training seed {seed}) failed:[/] {err}")
            return {"training_seed": seed, "status": "failed", "reason": str(err)}
        fds, divs, class_std = score(self.extractor, images, self.refs[e.reference])
        self.sheet.setdefault(e.name, images[0][:16])
        rec = {"training_seed": seed, "status": "ok", "fd": aggregate.stats(fds),
               "diversity": {**aggregate.stats(divs), "class_std": class_std},
               "expert_usage": usage.shares() if usage else {}, "wall_s": round(time.perf_counter() - t, 2)}
        self.log(f"{e.name} (training seed {seed}): {FD_METRIC} {rec['fd']['mean']:.2f} ± {rec['fd']['std']:.2f}, "
                 f"diversity {rec['diversity']['mean']:.4f} ({rec['wall_s']:.1f} s)")
        return rec

    def _plots(self) -> None:
        clf = self.res["classifier"]
        fd_label = f"{FD_METRIC} ({clf['id']}, test acc. {clf['test_accuracy']:.1%})"
        rows = self._rows()
        plots.plot_bars([r for r in rows if r["group"] != "threshold"], self.out / "fd_diversity.png", self.cfg.name,
                        fd_label)
        plots.plot_threshold([r for r in rows if r["group"] == "threshold"], self.out / "threshold.png", fd_label)
        plots.sample_sheet(self.sheet, self.out / "samples.png")
        acc = self.work / "router" / ("accuracy_by_t.png" if len(self.seeds) == 1 else f"seed{self.seeds[0]}/accuracy_by_t.png")
        if acc.exists():
            atomic_write(self.out / "router_accuracy.png", acc.read_bytes())


def _environment(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"device": name, "torch": torch.__version__, "python": platform.python_version(),
            "hddm": hddm_p2p.__version__}


def run_experiment(cfg: ExperimentConfig, out: Path, device: str = "auto", console: Console | None = None,
                   progress: bool = True, work: Path | None = None) -> dict:
    """Run every stage of ``cfg`` on ``device``, writing results into ``out`` and artifacts into ``work``
    (default ``out``); returns the results document."""
    dev = resolve_device(device)
    Path(out).mkdir(parents=True, exist_ok=True)
    configure_device(str(dev))
    return Run(cfg, Path(out), dev, console or Console(stderr=True), progress, work).execute()
