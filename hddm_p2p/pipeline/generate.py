"""``generate``: sample an assembled ensemble into PNGs, a grid and a plot of which experts ran when.

    lock ─verify─▶ LazyExperts + ExpertSpecs (from manifests) + router ─▶ Ensemble.sample (per batch)
         ─decode (value range | VAE)─▶ DIR/samples/000000.png …, grid.png, usage.png, usage.json, generate.json

Reproducible: sample i starts from noise drawn from its own generator seeded by (seed, i), so the same lock
and seed give the same images whatever ``batch_size`` is (up to float rounding of batched matmuls).
Atomic: everything is written into ``DIR.partial-<pid>`` and renamed to ``DIR`` last; a failed run leaves
no ``DIR`` behind (and the partial folder is removed).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from hddm_p2p.diffusion.routing import Mode
from hddm_p2p.diffusion.solvers import SOLVERS
from hddm_p2p.errors import SpecError
from hddm_p2p.pipeline.decode import Decoder
from hddm_p2p.pipeline.ensemble_loader import LoadedEnsemble, load_ensemble, parse_dtype
from hddm_p2p.pipeline.images import save_grid, save_samples
from hddm_p2p.pipeline.usage import UsageRecorder


@dataclass(frozen=True)
class GenerateConfig:
    """One ``hddm generate`` run (the CLI's flags)."""

    ensemble: Path
    out: Path
    n: int = 16
    steps: int = 30
    solver: str = "heun"
    mode: str = "top-k"
    k: int = 2
    threshold: float | None = None
    cfg: float = 1.0
    seed: int = 0
    prompt: str | None = None
    class_id: int | None = None
    device: str = "cpu"
    dtype: str = "fp32"
    offload: bool = False
    compile: bool = False                   # torch.compile each expert's blocks once loaded
    devices: tuple[str, ...] | None = None  # expert-parallel: experts placed across these (see placement.py)
    batch_size: int = 64
    force: bool = False
    progress: bool = True

    def check(self) -> None:
        """Flag errors that need no file: raised before anything is read or written."""
        if self.n < 1 or self.batch_size < 1 or self.steps < 1:
            raise SpecError("--n, --batch-size and --steps must be at least 1")
        if self.solver not in SOLVERS:
            raise SpecError(f"unknown --solver {self.solver!r}; choose one of: {', '.join(SOLVERS)}")
        Mode.parse(self.mode)
        parse_dtype(self.dtype)
        if self.k < 1:
            raise SpecError(f"--k must be at least 1, got {self.k}")
        if self.prompt is not None and self.class_id is not None:
            raise SpecError("pass either --prompt or --class, not both")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise SpecError(f"--threshold must be in [0, 1], got {self.threshold}")
        if self.devices is not None and self.offload:
            raise SpecError("--offload and --devices do not combine: offload keeps experts on the CPU; choose one")
        if Path(self.out).exists() and not self.force:
            raise SpecError(f"{self.out} already exists; choose another --out or pass --force to replace it")


@dataclass
class GenerateResult:
    out: Path
    names: list[str]
    usage: list[float]  # each expert's mean routing weight over the trajectory, in lock order
    experts: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    router: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"out": str(self.out), "router": self.router, "usage": self.usage, "experts": self.experts,
                "seconds": round(self.seconds, 3)}


def sample_noise(seed: int, start: int, count: int, shape: tuple[int, ...]) -> torch.Tensor:
    """(count, *shape) standard normal; row j is a function of (seed, start + j) only."""
    rows = []
    for i in range(start, start + count):
        state = np.random.SeedSequence([seed, i]).generate_state(2, dtype=np.uint32)
        g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        rows.append(torch.randn(shape, generator=g))
    return torch.stack(rows)


def make_condition(loaded: LoadedEnsemble, cfg: GenerateConfig, device: str):
    """``cond_fn(batch_size)`` giving the condition the experts expect, or SpecError for a mismatch."""
    c = loaded.conditioning
    if cfg.prompt is not None and c.kind != "text":
        raise SpecError(f"--prompt given, but this ensemble is {'unconditional' if c.kind == 'none' else c.kind + '-conditional'}"
                        f"{'; use --class ID' if c.kind == 'class' else '; drop --prompt'}")
    if cfg.class_id is not None and c.kind != "class":
        raise SpecError(f"--class given, but this ensemble is {'unconditional' if c.kind == 'none' else c.kind + '-conditional'}"
                        f"{'; use --prompt TEXT' if c.kind == 'text' else '; drop --class'}")
    if c.kind == "class" and cfg.class_id is not None:
        if not 0 <= cfg.class_id < c.num_classes:
            raise SpecError(f"--class {cfg.class_id} is out of range: the experts know classes 0..{c.num_classes - 1}")
        return lambda b: torch.full((b,), cfg.class_id, dtype=torch.long, device=device)
    if c.kind == "text" and cfg.prompt is not None:
        from hddm_p2p.train.text import get_text_encoder

        enc = get_text_encoder(c.text_encoder.id, c.text_encoder.max_tokens, device)
        one = enc([cfg.prompt])  # {"tokens": (1, L, E), "mask": (1, L)}
        return lambda b: {k: v.to(device).expand(b, *v.shape[1:]) for k, v in one.items()}
    return lambda b: None  # unconditional, or a conditional ensemble sampled with its null condition


def _partial_dir(out: Path) -> Path:
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "samples").mkdir(parents=True)
    return tmp


def _publish_dir(tmp: Path, out: Path, force: bool) -> None:
    """Rename the finished folder into place; with ``force`` an existing ``out`` is replaced."""
    old = None
    if out.exists() and force:
        old = out.with_name(f"{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _ensemble(loaded: LoadedEnsemble, cfg: GenerateConfig):
    """The lock's Ensemble; with ``cfg.devices`` its experts run on the devices ``loaded.placement`` chose."""
    if cfg.devices is None:
        return loaded.ensemble(cfg.mode, cfg.k)
    from hddm_p2p.diffusion import Ensemble
    from hddm_p2p.pipeline.placement import place_experts

    placed, loaded.placement = place_experts(loaded.experts, cfg.devices, cfg.device)
    return Ensemble(list(zip(placed, loaded.specs)), loaded.router, mode=cfg.mode, k=cfg.k)


def _sample_all(loaded: LoadedEnsemble, cfg: GenerateConfig, tmp: Path, recorder: UsageRecorder) -> torch.Tensor:
    space = loaded.data_space
    shape = (space.channels, space.resolution, space.resolution)
    ens, cond_fn, decode = _ensemble(loaded, cfg), make_condition(loaded, cfg, cfg.device), Decoder(space, cfg.device)
    images = []
    with Progress(transient=True, disable=not cfg.progress) as bar:
        task = bar.add_task("sampling", total=cfg.n)
        for start in range(0, cfg.n, cfg.batch_size):
            b = min(cfg.batch_size, cfg.n - start)
            noise = sample_noise(cfg.seed, start, b, shape).to(cfg.device)
            x = ens.sample(noise, steps=cfg.steps, solver=cfg.solver, cond=cond_fn(b), cfg_scale=cfg.cfg,
                           callback=recorder)
            img = decode(x)
            save_samples(img, tmp / "samples", start=start)
            images.append(img)
            bar.update(task, advance=b)
    return torch.cat(images)


def _record(loaded: LoadedEnsemble, cfg: GenerateConfig, seconds: float) -> dict[str, Any]:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k not in ("force", "progress")}
    return {"settings": settings, "lock_sha256": loaded.lock_sha256, "router": loaded.router_label,
            "experts": expert_stats(loaded), "seconds": round(seconds, 3), "torch": torch.__version__,
            "placement": None if getattr(loaded, "placement", None) is None else loaded.placement.to_json()}


def expert_stats(loaded: LoadedEnsemble) -> list[dict[str, Any]]:
    return [{"name": m.name, "manifest_cid": mem.manifest_cid, "objective": m.objective, "prediction": m.prediction,
             "schedule": m.schedule, "loaded": e.loaded, "loads": e.loads, "calls": e.calls, "rows": e.rows,
             "moves": e.moves, "device": str(e.device)}
            for m, mem, e in zip(loaded.manifests, loaded.lock.members, loaded.experts)]


def generate(cfg: GenerateConfig) -> GenerateResult:
    """Verify the lock, sample, and write ``cfg.out`` atomically; see the module docstring."""
    cfg.check()
    loaded = load_ensemble(Path(cfg.ensemble), cfg.device, cfg.dtype, cfg.offload, compile=cfg.compile)
    K = len(loaded.experts)
    if Mode.parse(cfg.mode) is Mode.TOP_K and cfg.k > K:
        raise SpecError(f"--k {cfg.k} is more than the {K} experts in this ensemble; use --k {K} or --mode full")
    if cfg.threshold is not None:
        loaded.use_threshold(cfg.threshold)
    make_condition(loaded, cfg, cfg.device)  # a --prompt/--class mismatch fails before any output exists
    out, t0 = Path(cfg.out), time.perf_counter()
    tmp = _partial_dir(out)
    try:
        recorder = UsageRecorder(loaded.names)
        images = _sample_all(loaded, cfg, tmp, recorder)
        scale = max(1, 64 // loaded.data_space.resolution) if loaded.data_space.kind == "pixel" else 1
        save_grid(images, tmp / "grid.png", scale=scale)
        merged = recorder.merged()
        merged.plot(tmp / "usage.png", title=f"expert usage ({loaded.router_label}, {cfg.mode})")
        (tmp / "usage.json").write_text(json.dumps(merged.to_json(), indent=2) + "\n")
        seconds = time.perf_counter() - t0
        (tmp / "generate.json").write_text(json.dumps(_record(loaded, cfg, seconds), indent=2) + "\n")
        _publish_dir(tmp, out, cfg.force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return GenerateResult(out, loaded.names, merged.mean_weights(), expert_stats(loaded), seconds, loaded.router_label)
