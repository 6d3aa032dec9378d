"""Train every expert of an experiment with equal settings: same architecture, batch, learning rate,
initial weights (one seed) and data order; steps are ``compute × steps`` (the monolithic model gets K×).

Each expert is also written as a regular expert directory (``model.safetensors`` + ``expert.json``,
docs/contracts.md) under ``OUT/experts/<name>``, so it can be published or sampled with the CLI later.
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
from hddm_p2p.experiments.prepare import Clusters
from hddm_p2p.models.dit import DiT, DiTConfig, get_preset
from hddm_p2p.train.data import InMemoryData, MemorySource
from hddm_p2p.train.expert_dir import conditioning, data_space, describe, write_expert_dir
from hddm_p2p.train.loop import CHECKPOINT, TrainConfig, Trainer
from hddm_p2p.train.objectives import ObjectiveConfig

TIME_SCALE = 1000.0  # experts trained from scratch see t = 1000·s


@dataclass
class TrainedExpert:
    """An expert ready for the ensemble: its EMA network (eval mode, on the device) and spec, plus its bill."""

    config: ExpertConfig
    model: nn.Module
    spec: ExpertSpec
    steps: int
    images_seen: int
    n_train: int
    wall_s: float
    final_loss: float
    path: Path

    def summary(self) -> dict:
        c = self.config
        return {"name": c.name, "objective": c.objective, "prediction": self.spec.prediction.value,
                "schedule": c.schedule, "cluster": c.cluster, "steps": self.steps, "images_seen": self.images_seen,
                "train_images": self.n_train, "wall_s": round(self.wall_s, 2), "final_loss": self.final_loss}


def subset(data: InMemoryData, rows: np.ndarray) -> InMemoryData:
    """The samples ``rows`` of ``data`` (a cluster's share)."""
    idx = torch.as_tensor(rows, dtype=torch.long)
    return InMemoryData(data.x.index_select(0, idx), data.labels.index_select(0, idx),
                        [data.captions[i] for i in rows.tolist()], [data.keys[i] for i in rows.tolist()],
                        data.space, data.source)


def expert_data(e: ExpertConfig, train: InMemoryData, clusters: Clusters) -> InMemoryData:
    return train if e.cluster is None else subset(train, np.flatnonzero(clusters.train == e.cluster))


def dit_config(cfg: ExperimentConfig, resolution: int) -> DiTConfig:
    return get_preset(cfg.model.preset, input_size=resolution, in_channels=3, **cfg.model.overrides)


def train_config(cfg: ExperimentConfig, steps: int, device: str) -> TrainConfig:
    t = cfg.train
    return TrainConfig(steps=steps, batch_size=t.batch_size, lr=t.lr, warmup_steps=t.warmup_steps,
                       ema_decay=t.ema_decay, grad_clip=t.grad_clip, seed=t.seed, device=device, compile=t.compile,
                       ckpt_every=1 << 30, log_every=50)


def _objective(e: ExpertConfig) -> ObjectiveConfig:
    return ObjectiveConfig(objective=e.objective, schedule=e.schedule, time_scale=TIME_SCALE, cond_dropout=0.0)


def seconds_per_step(cfg: ExperimentConfig, data: InMemoryData, device: str, out: Path, steps: int = 25) -> float:
    """Measured wall time of one training step (after 5 warm-up steps) of the experiment's expert model."""
    torch.manual_seed(cfg.train.seed)
    trainer = Trainer(DiT(dit_config(cfg, data.x.shape[-1])), MemorySource(data, cfg.train.batch_size, 0),
                      ObjectiveConfig(time_scale=TIME_SCALE, cond_dropout=0.0), train_config(cfg, steps, device), out)
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    for _ in range(5):
        trainer.train_step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps - 5):
        trainer.train_step()
    sync()
    return (time.perf_counter() - t0) / (steps - 5)


def steps_per_unit(cfg: ExperimentConfig, data: InMemoryData, device: str, out: Path) -> tuple[int, float | None]:
    """(steps of a compute-1 expert, measured s/step or None): fixed, or fitted to ``train.budget_s``."""
    if cfg.train.budget_s is None:
        return cfg.train.steps, None
    dt = seconds_per_step(cfg, data, device, out)
    units = sum(e.compute for e in cfg.experts)
    return max(50, int(cfg.train.budget_s / (units * dt)) // 50 * 50), dt


def _cluster_block(e: ExpertConfig, clusters: Clusters, n: int, keys: list[str]) -> dict | None:
    if e.cluster is None:
        return None
    return {"id": e.cluster, "feature_extractor": clusters.feature_extractor,
            "feature_dim": int(clusters.centroids.shape[1]), "centroid": clusters.centroids[e.cluster].tolist(),
            "size": n, "assignments_sha256": clusters.assignments_sha256(keys)}


def train_expert(e: ExpertConfig, cfg: ExperimentConfig, train: InMemoryData, clusters: Clusters, steps: int,
                 out: Path, device: str, progress: Callable | None = None) -> TrainedExpert:
    """Train one expert for ``round(compute × steps)`` steps and write its expert directory."""
    data = expert_data(e, train, clusters)
    n_steps = int(round(e.compute * steps))
    torch.manual_seed(cfg.train.seed)  # the same initial weights for every expert
    model = DiT(dit_config(cfg, data.x.shape[-1]))
    obj = _objective(e)
    tc = train_config(cfg, n_steps, device)
    trainer = Trainer(model, MemorySource(data, min(tc.batch_size, len(data)), tc.seed), obj,
                      replace(tc, batch_size=min(tc.batch_size, len(data))), out)
    result = trainer.run(progress)
    (out / CHECKPOINT).unlink(missing_ok=True)  # optimizer state is not needed after the run
    training = {"steps": result.step, "batch_size": trainer.cfg.batch_size, "seed": tc.seed,
                "final_loss": result.final_loss, "images_seen": result.images_seen,
                "wall_time_s": round(result.wall_time_s, 3), "device": device, "dataset": train.source}
    desc = describe(e.name, obj, model.config, data_space("pixel", model.config.input_size, 3), conditioning(model.config),
                    _cluster_block(e, clusters, len(data), train.keys), training)
    write_expert_dir(out, trainer.ema.state_dict(), model.config, desc)
    spec = ExpertSpec(obj.prediction, obj.schedule, time_scale=obj.time_scale, clip=1.0)  # pixels live in [−1, 1]
    return TrainedExpert(e, trainer.ema.module.eval(), spec, result.step, result.images_seen, len(data),
                         result.wall_time_s, result.final_loss, out)
