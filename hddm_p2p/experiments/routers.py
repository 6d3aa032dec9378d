"""The experiment's routers: one learned router over the K clusters per training seed (shared by every
routed ensemble of that seed), and the training-free ones the config can name (uniform, threshold, none).

The learned router is ``hddm_p2p.train.router``'s DiT-shaped classifier trained with cross-entropy
against the cluster labels on x_t = (1−t)·x0 + t·ε; logits column j belongs to cluster j, so an
ensemble lists its experts in cluster order.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from hddm_p2p.diffusion import ThresholdRouter, UniformRouter
from hddm_p2p.errors import SpecError
from hddm_p2p.experiments.config import EnsembleConfig, ExperimentConfig
from hddm_p2p.experiments.prepare import Clusters
from hddm_p2p.models.router import LoadedRouter, Router, router_preset, save_router
from hddm_p2p.train.data import InMemoryData
from hddm_p2p.train.router import (LabelledData, RouterTrainConfig, _split, accuracy_by_t, fit, plot_accuracy)


def autocast(device: torch.device):
    """bf16 autocast on CUDA (matrix products in bf16, reductions in fp32); nothing on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def train_cluster_router(cfg: ExperimentConfig, train: InMemoryData, clusters: Clusters, out: Path,
                         device: torch.device, training_seed: int = 0) -> tuple[LoadedRouter, dict]:
    """Train the router (seed ``router.seed + training_seed``) on all training images labelled by cluster;
    write a router directory to ``out``."""
    r = cfg.router
    rc = RouterTrainConfig(preset=r.preset, steps=r.steps, batch_size=r.batch_size, lr=r.lr,
                           seed=r.seed + training_seed, device=str(device), name=f"{cfg.name}-router")
    data = LabelledData(train.x, torch.from_numpy(clusters.train), "pixel")
    train_idx, val_idx = _split(len(train), rc.holdout, r.seed)  # one held-out split for every training seed
    val_idx = val_idx[:rc.max_eval]
    arch = router_preset(r.preset, clusters.k, input_size=train.x.shape[-1], in_channels=3)
    torch.manual_seed(rc.seed)
    model = Router(arch).to(device)
    # fp32: the router is small next to the experts, and the DiT-S/4 router trained under bf16 autocast on an
    # H200 stayed at a constant prediction (2026-11-27 run); fp32 removes that variable.
    final_loss = fit(model, data, train_idx, rc, device)
    acc = accuracy_by_t(model, data, val_idx, device, r.seed + 1)  # the same probe noise for every seed
    chance = float(np.bincount(data.labels[val_idx].numpy(), minlength=clusters.k).max() / len(val_idx))
    experts = [f"cluster:{j}" for j in range(clusters.k)]
    desc = {"kind": "router", "name": rc.name,
            "architecture": {"family": "dit-router", "preset": r.preset, "config": arch.__dict__},
            "experts": experts, "path": "flow-linear", "feature_extractor": clusters.feature_extractor,
            "training": {"steps": r.steps, "batch_size": r.batch_size, "lr": r.lr, "seed": rc.seed,
                         "final_loss": final_loss, "majority_rate": chance, "held_out": len(val_idx)},
            "accuracy_by_t": acc}
    save_router(out, model, desc)
    plot_accuracy(acc, chance, out / "accuracy_by_t.png")
    return LoadedRouter(model, experts), desc


def ensemble_router(e: EnsembleConfig, order: list[str], learned: LoadedRouter | None):
    """The router callable for ensemble ``e`` whose experts are ``order`` (names, in the Ensemble's order)."""
    kind = e.router.kind
    if kind == "learned":
        if learned is None:
            raise SpecError(f"ensemble {e.name!r} needs the learned router, which was not trained")
        return learned
    if kind == "uniform":
        return UniformRouter(len(order))
    if kind == "threshold":
        low = [order.index(n) for n in e.router.low]
        high = [order.index(n) for n in e.router.high]
        return ThresholdRouter(e.router.tau, low=low, high=high, n_experts=len(order))
    return None  # "none": one expert, weight 1
