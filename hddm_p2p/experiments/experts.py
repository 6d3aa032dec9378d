"""Train every expert of an experiment with equal settings: same architecture, batch, learning rate,
and — for one training seed — the same initial weights and data-order seed; steps are ``compute × steps``
(the monolithic model gets K×). Each (expert, training seed) is one ``ExpertJob``.

A job is self-contained (its rows of the training set, its cluster block, its step count), so it runs
the same in this process or in a worker process sharing the device (``hddm_p2p.experiments.jobs``):
the same seed gives the same weights, batches and noise either way. Each expert is written as a regular
expert directory (``model.safetensors`` + ``expert.json``, docs/contracts.md) and loaded back from it.

Step counts are fitted once, before any expert trains, from the measured step rate (``fit_steps``), and
are then fixed and equal for every expert and training seed: equal compute is counted in steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from hddm_p2p.diffusion import ExpertSpec
from hddm_p2p.experiments.config import ExperimentConfig, ExpertConfig
from hddm_p2p.models.dit import DiT, DiTConfig, get_preset
from hddm_p2p.models.loading import load_weights
from hddm_p2p.train.data import InMemoryData, MemorySource
from hddm_p2p.train.expert_dir import WEIGHTS, conditioning, data_space, describe, write_expert_dir
from hddm_p2p.train.loop import CHECKPOINT, TrainConfig, Trainer
from hddm_p2p.train.objectives import ObjectiveConfig

TIME_SCALE = 1000.0  # experts trained from scratch see t = 1000·s
COMPILE: dict = {}   # torch.compile options for each DiT block (tests use {"backend": "eager"})
Tensor = torch.Tensor


@dataclass(frozen=True)
class ExpertJob:
    """One expert for one training seed: all a process needs besides the training pixels."""

    expert: ExpertConfig
    seed: int
    steps: int
    rows: np.ndarray | None          # the expert's rows of the training set; None: all of it
    cluster: dict | None             # expert.json's cluster block (None for the monolithic model)
    out: Path

    @property
    def key(self) -> tuple[str, int]:
        return self.expert.name, self.seed


@dataclass
class TrainedExpert:
    """An expert ready for the ensemble: its EMA network (eval mode, on the device) and spec, plus its bill."""

    config: ExpertConfig
    model: nn.Module
    spec: ExpertSpec
    bill: dict

    @property
    def images_seen(self) -> int:
        return self.bill["images_seen"]


def dit_config(cfg: ExperimentConfig, resolution: int) -> DiTConfig:
    return get_preset(cfg.model.preset, input_size=resolution, in_channels=3, **cfg.model.overrides)


def train_config(cfg: ExperimentConfig, steps: int, seed: int, device: str, batch: int) -> TrainConfig:
    t = cfg.train  # compile is applied per block here (``compile_blocks``), not by the Trainer
    return TrainConfig(steps=steps, batch_size=batch, lr=t.lr, warmup_steps=t.warmup_steps, ema_decay=t.ema_decay,
                       grad_clip=t.grad_clip, seed=seed, device=device, ckpt_every=1 << 30, log_every=50)


def objective(e: ExpertConfig) -> ObjectiveConfig:
    return ObjectiveConfig(objective=e.objective, schedule=e.schedule, time_scale=TIME_SCALE, cond_dropout=0.0)


def compile_blocks(model: DiT) -> None:
    """torch.compile each DiT block in place (``hddm_p2p.models.compile``) with ``COMPILE``'s options;
    state-dict keys unchanged. Called after the Trainer copied the model for its EMA."""
    from hddm_p2p.models.compile import compile_blocks as compile_in_place

    compile_in_place(model, **COMPILE)


def make_trainer(cfg: ExperimentConfig, data: InMemoryData, obj: ObjectiveConfig, steps: int, seed: int,
                 device: str, out: Path, compile: bool) -> Trainer:
    """A Trainer whose model is built after ``manual_seed(seed)``: equal initial weights for one seed."""
    batch = min(cfg.train.batch_size, len(data))
    torch.manual_seed(seed)
    trainer = Trainer(DiT(dit_config(cfg, data.x.shape[-1])), MemorySource(data, batch, seed), obj,
                      train_config(cfg, steps, seed, device, batch), out)
    if compile:
        compile_blocks(trainer.model)
    return trainer


def job_data(job: ExpertJob, x: Tensor, labels: Tensor, source: str) -> InMemoryData:
    """The job's training images (uint8 (n, 3, R, R)) as the Trainer's source reads them."""
    if job.rows is not None:
        idx = torch.as_tensor(job.rows, dtype=torch.long)
        x, labels = x.index_select(0, idx), labels.index_select(0, idx)
    return InMemoryData(x, labels, [""] * len(x), [], "pixel", source)  # unconditional: captions unused


def train_expert(cfg: ExperimentConfig, job: ExpertJob, x: Tensor, labels: Tensor, source: str, device: str,
                 compile: bool, progress: Callable | None = None) -> dict:
    """Train one expert for ``job.steps`` steps, write its expert directory, return its bill."""
    data, obj = job_data(job, x, labels, source), objective(job.expert)
    trainer = make_trainer(cfg, data, obj, job.steps, job.seed, device, job.out, compile)
    result = trainer.run(progress)
    (job.out / CHECKPOINT).unlink(missing_ok=True)  # optimizer state is not needed after the run
    training = {"steps": result.step, "batch_size": trainer.cfg.batch_size, "seed": job.seed,
                "final_loss": result.final_loss, "images_seen": result.images_seen,
                "wall_time_s": round(result.wall_time_s, 3), "device": device, "dataset": source,
                "compiled_blocks": compile}
    model = trainer.model
    desc = describe(job.expert.name, obj, model.config, data_space("pixel", model.config.input_size, 3),
                    conditioning(model.config), job.cluster, training)
    write_expert_dir(job.out, trainer.ema.state_dict(), model.config, desc)
    e = job.expert
    return {"name": e.name, "seed": job.seed, "objective": e.objective, "prediction": obj.prediction.value,
            "schedule": e.schedule, "cluster": e.cluster, "steps": result.step, "images_seen": result.images_seen,
            "train_images": len(data), "wall_s": round(result.wall_time_s, 2),
            "ms_per_step": round(1e3 * result.wall_time_s / max(result.step, 1), 2), "final_loss": result.final_loss,
            "compiled": compile, "path": str(job.out)}


def load_trained(job: ExpertJob, bill: dict, device: torch.device) -> TrainedExpert:
    """The EMA weights the job wrote, on ``device``, with the spec the ensemble needs."""
    obj = objective(job.expert)
    model = load_weights(job.out / WEIGHTS, device)
    return TrainedExpert(job.expert, model, ExpertSpec(obj.prediction, obj.schedule, time_scale=TIME_SCALE, clip=1.0),
                         bill)  # pixels live in [−1, 1]: clip 1


# -- how many steps ------------------------------------------------------------------------------------
def measure_rate(cfg: ExperimentConfig, x: Tensor, labels: Tensor, device: str, compile: bool, out: Path,
                 seconds: float = 3.0, barrier=None) -> dict:
    """Training steps per second of the experiment's expert model on its real data, measured for about
    ``seconds`` after warm-up (which compiles, if asked); with ``barrier``, every worker starts timing at
    once, so the rate is the one each gets while all share the device. A failed compile is reported."""
    data = InMemoryData(x, labels, [""] * len(x), [], "pixel", "calibration")
    seed, error, t0 = cfg.train.training_seeds[0], None, time.perf_counter()
    try:
        trainer = make_trainer(cfg, data, ObjectiveConfig(time_scale=TIME_SCALE, cond_dropout=0.0), 1 << 20, seed,
                               device, out, compile)
        for _ in range(3):
            trainer.train_step()
    except Exception as e:  # a compiler that cannot build here; the caller re-measures eager
        error = describe_error(e)
    _sync(device)
    warmup = time.perf_counter() - t0
    if barrier is not None:
        barrier.wait(timeout=600)
    steps, t0 = 0, time.perf_counter()
    while error is None and (steps < 5 or time.perf_counter() - t0 < seconds):
        trainer.train_step()
        steps += 1
    _sync(device)
    wall = time.perf_counter() - t0
    return {"steps": steps, "seconds": round(wall, 4), "steps_per_s": steps / wall if steps else 0.0,
            "warmup_s": round(warmup, 2), "compiled": compile and error is None, "compile_error": error}


def describe_error(e: BaseException) -> str:
    """One line: the exception type and the first line of its message."""
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def lpt_makespan(sizes: list[float], workers: int) -> float:
    """Makespan of the longest-processing-time-first list schedule of ``sizes`` on ``workers`` machines:
    the order in which jobs are submitted (``ordered_jobs``), each job to the first free worker."""
    loads = [0.0] * max(1, workers)
    for s in sorted(sizes, reverse=True):
        i = loads.index(min(loads))
        loads[i] += s
    return max(loads)


def fit_steps(budget_s: float, rates: list[float], sizes: list[float]) -> tuple[int, dict]:
    """Steps per unit of compute so that every job finishes within about ``budget_s``.

    ``rates``: steps/s of each of the P workers measured while all P trained at once; each job then
    takes compute × steps / (its worker's rate), and jobs go longest first to the first free worker.
    With one worker this is the old rule, steps = budget / (Σ compute × s/step).
    """
    per_step = len(rates) / sum(rates)  # seconds per step of one worker among P (harmonic mean of 1/rate)
    span = lpt_makespan(sizes, len(rates))
    steps = max(50, int(budget_s / (per_step * span)) // 50 * 50)
    return steps, {"workers": len(rates), "steps_per_s_each": [round(r, 2) for r in rates],
                   "steps_per_s_total": round(sum(rates), 2), "s_per_step_each": round(per_step, 5),
                   "makespan_units": span, "expected_training_s": round(steps * per_step * span, 1)}


def ordered_jobs(cfg: ExperimentConfig, steps: int, rows: dict[int | None, np.ndarray | None],
                 blocks: dict[int | None, dict | None], root: Path) -> list[ExpertJob]:
    """Every (expert, training seed), longest first (compute), then by seed, then as listed; one training
    seed keeps the old layout ``root/<name>``, several use ``root/seed<s>/<name>``."""
    seeds = cfg.train.training_seeds
    jobs = [ExpertJob(e, s, int(round(e.compute * steps)), rows[e.cluster], blocks[e.cluster],
                      root / e.name if len(seeds) == 1 else root / f"seed{s}" / e.name)
            for e in cfg.experts for s in seeds]
    order = {e.name: i for i, e in enumerate(cfg.experts)}
    return sorted(jobs, key=lambda j: (-j.expert.compute, seeds.index(j.seed), order[j.expert.name]))
