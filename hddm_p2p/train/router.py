"""Router training: cross-entropy of Router(x_t, t) against cluster labels on the flow-linear path.

    t ~ U(0, 1),  ε ~ N(0, I),  x_t = (1 − t)·x0 + t·ε,  loss = CE(Router(x_t, t), label(x0))

Held-out top-1 accuracy is reported per noise level t (a table and ``accuracy_by_t.png``): high at
small t where the image is visible, falling to the majority-class rate as t → 1 where x_t is pure
noise. Output is a router directory (``model.safetensors`` + ``router.json``, docs/contracts.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import Progress

from hddm_p2p.errors import DataError, SpecError
from hddm_p2p.models.router import Router, router_preset, save_router
from hddm_p2p.train.data import EpochBatches, Filter, InMemoryData, load_in_memory
from hddm_p2p.train.expert_dir import data_space as make_data_space
from hddm_p2p.train.router_labels import (ExpertRef, check_data_spaces, expert_centroids, labels_from_assignments,
                                          labels_from_centroids, read_expert)

EVAL_TS = tuple(round(0.1 * i, 1) for i in range(11))  # 0.0, 0.1, ..., 1.0


@dataclass(frozen=True)
class RouterTrainConfig:
    """How to train one router; defaults are a CPU-sized run of the ``tiny`` preset."""

    preset: str = "tiny"
    steps: int = 500
    batch_size: int = 64
    lr: float = 3e-4  # AdamW; DiT's 1e-4 is for batch 256 and far more steps
    holdout: float = 0.1  # fraction of labelled samples kept out for the accuracy-vs-t report
    max_eval: int = 1000  # held-out samples scored per noise level
    seed: int = 0
    resolution: int = 32  # pixels; ignored for latent data (their own size is used)
    limit: int | None = None  # use only the first N samples of the data
    device: str = "cpu"
    name: str = "router"

    def __post_init__(self):
        if not 0 < self.holdout < 1:
            raise SpecError(f"--holdout must be in (0, 1), got {self.holdout}")
        if self.steps < 1 or self.batch_size < 1:
            raise SpecError("--steps and --batch-size must be positive")


@dataclass(frozen=True)
class LabelledData:
    x: torch.Tensor  # uint8 pixels (N, 3, R, R) or float latents (N, C, h, w)
    labels: torch.Tensor  # (N,) long in [0, K)
    space: str  # "pixel" | "latent"

    def model_input(self, idx: torch.Tensor, device) -> torch.Tensor:
        x = self.x.index_select(0, idx).to(device)
        return x.float() / 127.5 - 1 if self.space == "pixel" else x.float()  # pixels to [−1, 1]


def _device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def _split(n: int, holdout: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n * holdout)))
    if n - n_val < 2:
        raise DataError(f"only {n} labelled samples: too few to train and hold out; use more data")
    return perm[n_val:], perm[:n_val]


def noisy(x0: torch.Tensor, t: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """x_t = (1 − t)·x0 + t·ε on the flow-linear path; t (B,)."""
    eps = torch.randn(x0.shape, generator=gen, device=x0.device) if gen else torch.randn_like(x0)
    t = t.view(-1, *[1] * (x0.dim() - 1))
    return (1 - t) * x0 + t * eps


@torch.no_grad()
def accuracy_by_t(model: Router, data: LabelledData, idx: torch.Tensor, device, seed: int,
                  ts=EVAL_TS, batch: int = 256) -> list[list[float]]:
    """[[t, top-1 accuracy on ``idx``]] with noise fixed by ``seed`` (the same ε at every t)."""
    model.eval()
    out = []
    for t in ts:
        gen, correct = torch.Generator(device=device).manual_seed(seed), 0
        for i in range(0, len(idx), batch):
            j = idx[i:i + batch]
            x_t = noisy(data.model_input(j, device), torch.full((len(j),), t, device=device), gen)
            correct += (model(x_t, t).argmax(1).cpu() == data.labels[j]).sum().item()
        out.append([float(t), correct / len(idx)])
    model.train()
    return out


def fit(model: Router, data: LabelledData, train_idx: torch.Tensor, cfg: RouterTrainConfig, device) -> float:
    """``cfg.steps`` AdamW steps of cross-entropy on noisy inputs; returns the mean loss of the last 50 steps."""
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    batches, losses = EpochBatches(len(train_idx), min(cfg.batch_size, len(train_idx)), cfg.seed), []
    with Progress(transient=True, console=Console(stderr=True)) as bar:  # stdout stays clean for --json
        task = bar.add_task("training router", total=cfg.steps)
        for _ in range(cfg.steps):
            idx = train_idx[batches.next()]
            x0, y = data.model_input(idx, device), data.labels[idx].to(device)
            t = torch.rand(len(idx), device=device)  # (B,) uniform noise levels
            loss = F.cross_entropy(model(noisy(x0, t), t), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.update(task, advance=1, description=f"training router  loss {loss.item():.3f}")
    if not np.isfinite(losses).all():
        raise DataError("router loss became NaN/Inf; lower --lr")
    return float(np.mean(losses[-50:]))


def plot_accuracy(acc: list[list[float]], chance: float, path: Path) -> None:
    """PNG of held-out top-1 accuracy against t, with the majority-class rate as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.plot([a[0] for a in acc], [a[1] for a in acc], "o-", label="router (held out)")
    ax.axhline(chance, ls="--", color="gray", label=f"majority class ({chance:.2f})")
    ax.set(xlabel="t (0 clean → 1 pure noise)", ylabel="top-1 accuracy", ylim=(0, 1.02),
           title="Router accuracy by noise level")
    ax.legend(loc="lower left")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def _load(data: str, cfg: RouterTrainConfig, resolution: int | None = None, channels: int = 3) -> InMemoryData:
    return load_in_memory(data, resolution or cfg.resolution, Filter(limit=cfg.limit), channels=channels)


def _space_of(mem: InMemoryData) -> dict:
    if mem.space == "pixel":
        return make_data_space("pixel", mem.x.shape[-1], mem.x.shape[1])
    return make_data_space("latent", mem.x.shape[-1], mem.x.shape[1], mem.meta.get("vae"))


def _train(mem: InMemoryData, rows: np.ndarray, labels: np.ndarray, experts: list[str], feature_extractor: str,
           out: Path, cfg: RouterTrainConfig) -> dict:
    """Train on ``mem.x[rows]`` with ``labels``; write the router dir; return router.json's content."""
    K = len(experts)
    if labels.min() < 0 or labels.max() >= K:
        raise DataError(f"cluster labels span [{labels.min()}, {labels.max()}] but there are {K} experts")
    device, started = _device(cfg.device), time.time()
    data = LabelledData(mem.x[torch.as_tensor(rows)], torch.as_tensor(labels), mem.space)
    train_idx, val_idx = _split(len(labels), cfg.holdout, cfg.seed)
    val_idx = val_idx[:cfg.max_eval]
    arch = router_preset(cfg.preset, K, input_size=data.x.shape[-1], in_channels=data.x.shape[1])
    torch.manual_seed(cfg.seed)
    model = Router(arch).to(device)
    final_loss = fit(model, data, train_idx, cfg, device)
    acc = accuracy_by_t(model, data, val_idx, device, cfg.seed + 1)
    chance = float(np.bincount(data.labels[val_idx].numpy(), minlength=K).max() / len(val_idx))
    description = {
        "kind": "router", "name": cfg.name,
        "architecture": {"family": "dit-router", "preset": cfg.preset, "config": json.loads(arch.to_json())},
        "experts": list(experts), "data_space": _space_of(mem), "path": "flow-linear",
        "feature_extractor": feature_extractor,
        "training": {**{k: v for k, v in asdict(cfg).items() if k not in ("name", "device")},
                     "final_loss": final_loss, "samples": len(labels), "held_out": len(val_idx),
                     "majority_rate": chance, "wall_time_s": round(time.time() - started, 2),
                     "device": str(device), "dataset": mem.source},
        "accuracy_by_t": acc,
    }
    save_router(out, model, description)
    plot_accuracy(acc, chance, out / "accuracy_by_t.png")
    return description


def train_router_from_assignments(data: str, assignments: str | Path, out_dir: str | Path,
                                  cfg: RouterTrainConfig = RouterTrainConfig(),
                                  expert_ids: list[str] | None = None) -> dict:
    """Router over the clusters of ``assignments.json`` (key → cluster id); column j is cluster j.

    ``expert_ids`` names the experts trained on clusters 0..K−1; without them the columns are named
    ``cluster:<j>`` (fine for experiments; bind real ids before publishing).
    """
    try:
        mapping = json.loads(Path(assignments).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read assignments {assignments}: {e}") from None
    if not isinstance(mapping, dict) or not mapping:
        raise DataError(f"{assignments} must be a non-empty JSON object mapping sample key → cluster id")
    mem = _load(data, cfg)
    rows, labels = labels_from_assignments(mem.keys, mapping)
    K = max(int(v) for v in mapping.values()) + 1
    experts = expert_ids or [f"cluster:{j}" for j in range(K)]
    if len(experts) != K:
        raise SpecError(f"{len(experts)} expert ids given for {K} clusters in {assignments}")
    summary = Path(assignments).with_name("summary.json")
    extractor = json.loads(summary.read_text()).get("feature_extractor", "unknown") if summary.exists() else "unknown"
    return _train(mem, rows, labels, experts, extractor, Path(out_dir), cfg)


def train_router_for_experts(expert_descriptions: list[dict], expert_ids: list[str], data: str,
                             out_dir: str | Path, cfg: RouterTrainConfig = RouterTrainConfig()) -> dict:
    """Router for published experts, with no coordination: label local ``data`` by the experts' centroids.

    ``expert_descriptions[j]`` is expert j's expert.json / manifest (needs ``cluster.centroid`` and
    ``cluster.feature_extractor``, shared by all), ``expert_ids[j]`` its identity (manifest CID or
    ``sha256:<hex>``); router column j belongs to ``expert_ids[j]``. Returns router.json's content.
    """
    if len(expert_descriptions) != len(expert_ids) or len(expert_ids) < 2:
        raise SpecError(f"need at least 2 experts with one id each; got {len(expert_descriptions)} descriptions "
                        f"and {len(expert_ids)} ids")
    centroids, extractor_id = expert_centroids(expert_descriptions)
    space = check_data_spaces(expert_descriptions)
    if space and space.get("kind") != "pixel":
        raise DataError("centroid labelling needs images; for latent experts cluster the images and use --assignments")
    mem = _load(data, cfg, space.get("resolution") if space else None, space.get("channels", 3) if space else 3)
    labels = labels_from_centroids(data, mem.keys, extractor_id, centroids, cfg.device)
    return _train(mem, np.arange(len(mem)), labels, expert_ids, extractor_id, Path(out_dir), cfg)


def train_router_from_paths(expert_paths: list[str | Path], data: str, out_dir: str | Path,
                            cfg: RouterTrainConfig = RouterTrainConfig()) -> dict:
    """``hddm train router --experts``: expert directories or manifest files → ``train_router_for_experts``."""
    refs: list[ExpertRef] = [read_expert(p) for p in expert_paths]
    return train_router_for_experts([r.description for r in refs], [r.id for r in refs], data, out_dir, cfg)
