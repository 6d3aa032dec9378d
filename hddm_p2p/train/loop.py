"""The single-device training loop shared by every objective: AdamW + warmup, grad clipping, EMA,
bf16 autocast on CUDA (fp32 on CPU), optional ``torch.compile``, atomic checkpoints and exact resume.

Determinism: the model is built after ``torch.manual_seed(seed)``; the data order is a function of
(seed, epoch) (``EpochBatches``); time, noise and dropout come from one generator seeded with ``seed``.
A checkpoint stores model, EMA, optimizer, LR scheduler, step, that generator's state and the data
position, so a resumed run continues bit-for-bit where an uninterrupted one would be (on CPU; CUDA
kernels may add their own nondeterminism). Checkpoints go to ``OUT/checkpoints/last.pt`` every
``ckpt_every`` steps and on Ctrl-C (then ``KeyboardInterrupt`` propagates: the CLI exits 130).
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from hddm_p2p.errors import NumericalError, SpecError
from hddm_p2p.train.data import Batch
from hddm_p2p.train import fsdp
from hddm_p2p.train.clip import clipped_step
from hddm_p2p.train.distributed import Dist
from hddm_p2p.train.objectives import ObjectiveConfig, diffusion_loss

Tensor = torch.Tensor
CHECKPOINT = Path("checkpoints") / "last.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; defaults follow DiT (AdamW 1e-4, no weight decay, EMA 0.9999)."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100         # linear LR warmup from 0
    grad_clip: float = 1.0          # max global grad norm; 0 disables
    ema_decay: float = 0.9999       # capped by (1 + step) / (10 + step) early on, so short runs still move
    ckpt_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "cpu"
    compile: bool = False
    precision: str = "auto"         # "auto" = bf16 autocast on CUDA, fp32 elsewhere; "fp32" | "bf16"
    residual: str = "auto"          # a DiT's residual stream: "auto" = bf16 under bf16 autocast (the benchmarked
                                    # fast path, docs/benchmarks.md), else fp32; "fp32" keeps DiT's fp32 stream
    fsdp: bool = False              # under torchrun: shard the model over the ranks (FSDP2) instead of DDP

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise SpecError("steps and batch size must be at least 1")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise SpecError(f"unknown precision {self.precision!r}; choose auto, fp32 or bf16")
        if self.residual not in ("auto", "fp32"):
            raise SpecError(f"unknown residual stream {self.residual!r}; choose auto or fp32")

    def bf16(self, device: torch.device) -> bool:
        return self.precision == "bf16" or (self.precision == "auto" and device.type == "cuda")

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16) if self.bf16(device) else nullcontext()

    def residual_dtype(self, device: torch.device) -> torch.dtype | None:
        """A DiT's ``residual_dtype`` for training: bf16 under bf16 autocast unless ``residual`` is "fp32"."""
        return torch.bfloat16 if self.residual == "auto" and self.bf16(device) else None


class EMA:
    """Exponential moving average of a model's parameters: θ̄ ← d·θ̄ + (1 − d)·θ."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        ema, cur = list(self.module.parameters()), [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema, cur, 1 - d)

    def state_dict(self) -> dict:
        return fsdp.model_state(self.module)  # full tensors; under FSDP a collective (all ranks call it)

    def load_state_dict(self, state: dict) -> None:
        fsdp.load_model_state(self.module, state)


class _Stop:
    requested = False


@contextmanager
def deferred_sigint():
    """Turn the first Ctrl-C into a flag checked between steps (a step is never cut in half, so the
    checkpoint written on interrupt is consistent); a second Ctrl-C interrupts at once."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        stop.requested = True
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def warmup_lambda(warmup: int) -> Callable[[int], float]:
    return lambda step: min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device):
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999),
                            fused=device.type == "cuda")
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, warmup_lambda(cfg.warmup_steps))


@dataclass
class TrainResult:
    step: int
    final_loss: float
    images_seen: int
    wall_time_s: float
    skipped: int


class Trainer:
    """Trains ``model`` with one objective on batches of ``source`` (``MemorySource`` or ``ShardStream``:
    ``next() -> Batch``, ``state_dict``, ``load_state_dict``, ``epoch``, ``skipped``); ``cond_fn(batch)`` gives
    the batch's condition (None, labels or text tokens) on the device."""

    def __init__(self, model: nn.Module, source, obj: ObjectiveConfig, cfg: TrainConfig, out: Path,
                 cond_fn: Callable[[Batch], object] = lambda batch: None, dist: Dist = Dist()):
        self.device = torch.device(cfg.device)
        self.model, self.source, self.obj, self.cfg, self.out = model.to(self.device), source, obj, cfg, Path(out)
        if hasattr(source, "to"):  # in-memory data that fits on the GPU stays there: no per-step copy or sync
            source.to(self.device)
        self.cond_fn = cond_fn
        self.ema = EMA(self.model, cfg.ema_decay)
        if hasattr(self.model, "residual_dtype"):  # a DiT: the trained copy's residual stream follows the
            self.model.residual_dtype = cfg.residual_dtype(self.device)  # autocast dtype (not the EMA copy's)
        self.dist = dist  # under torchrun: DDP (or FSDP with cfg.fsdp), rank 0 writes (hddm_p2p.train.distributed)
        self.sharded = cfg.fsdp and dist.enabled
        if self.sharded:  # model and EMA sharded alike, so the EMA update stays shard-local
            fsdp.shard(self.model, self.device), fsdp.shard(self.ema.module, self.device)
        self.opt, self.sched = make_optimizer(self.model, cfg, self.device)
        self.gen = torch.Generator(self.device).manual_seed(cfg.seed)
        self.step, self.wall = 0, 0.0
        self.forward = self.model if self.sharded else self.dist.wrap(self.model)
        self.forward = torch.compile(self.forward) if cfg.compile else self.forward

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Full (single-device) state dicts; under FSDP a collective: every rank calls it, rank 0's is whole."""
        return {"model": fsdp.model_state(self.model), "ema": self.ema.state_dict(),
                "optimizer": fsdp.optim_state(self.model, self.opt),
                "scheduler": self.sched.state_dict(), "step": self.step, "wall_time_s": self.wall,
                "generator": self.gen.get_state(), "data": self.source.state_dict(), "config": asdict(self.cfg),
                "objective": asdict(self.obj)}

    def save_checkpoint(self, state: dict | None = None) -> Path:
        path = self.out / CHECKPOINT
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        torch.save(self.state_dict() if state is None else state, tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self) -> bool:
        """Restore from ``OUT/checkpoints/last.pt`` if it exists; True when it did."""
        path = self.out / CHECKPOINT
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["objective"] != asdict(self.obj):
            raise SpecError(f"checkpoint {path} was trained with {state['objective']}, not {asdict(self.obj)}; "
                            "use the same flags or another --out")
        fsdp.load_model_state(self.model, state["model"])
        self.ema.load_state_dict(state["ema"])
        fsdp.load_optim_state(self.model, self.opt, state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.gen.set_state(state["generator"].cpu())
        self.source.load_state_dict(state["data"])
        self.step, self.wall = int(state["step"]), float(state["wall_time_s"])
        _truncate_metrics(self.out / "metrics.jsonl", self.step)
        return True

    # -- one step ----------------------------------------------------------------------------------
    def train_step(self) -> Tensor:
        batch = self.source.next()
        x0 = batch.model_input(self.device)
        cond = self.cond_fn(batch)
        with self.cfg.autocast(self.device):
            loss = diffusion_loss(self.forward, x0, cond, self.obj, self.gen, part=self.dist.part(x0.shape[0]))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg.grad_clip
        with clipped_step(self.opt, self.model.parameters(), clip) if clip > 0 else nullcontext():
            # the clipping factor goes to the fused AdamW step instead of a pass over the gradients
            self.opt.step()
        self.sched.step()
        self.ema.update(self.model, self.step)
        self.step += 1
        return loss.detach()

    def run(self, progress=None) -> TrainResult:
        """Train to ``cfg.steps``; ``progress(step, loss|None, images_per_s)`` is called every step."""
        self.model.train()
        window, last_loss, t0, n0 = [], float("nan"), time.perf_counter(), self.step
        wall0 = self.wall
        with deferred_sigint() as stop, self.dist.guard():
            while self.step < self.cfg.steps:
                window.append(self.train_step())
                if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
                    last_loss = self.dist.mean(torch.stack(window).mean()).item()  # one host sync per interval
                    window = []
                    if not math.isfinite(last_loss):
                        raise NumericalError(f"loss became {last_loss} at step {self.step}; lower --lr")
                    rate = (self.step - n0) * self.cfg.batch_size / max(time.perf_counter() - t0, 1e-9)
                    self._log({"step": self.step, "loss": last_loss, "lr": self.sched.get_last_lr()[0],
                               "images_per_s": rate, "epoch": self.source.epoch, "skipped": self.source.skipped})
                    if progress:
                        progress(self.step, last_loss, rate)
                elif progress:
                    progress(self.step, None, None)
                if stop.requested:  # Ctrl-C: checkpoint the completed step, then stop like an interrupt
                    self._checkpoint(wall0 + time.perf_counter() - t0)
                    raise KeyboardInterrupt
                if self.step % self.cfg.ckpt_every == 0 and self.step < self.cfg.steps:
                    self._checkpoint(wall0 + time.perf_counter() - t0)
        self._checkpoint(wall0 + time.perf_counter() - t0)
        return TrainResult(self.step, last_loss, self.step * self.cfg.batch_size, self.wall, self.source.skipped)

    def _checkpoint(self, wall: float) -> None:
        self.wall = wall  # training seconds over all sessions of this run
        state = self.state_dict() if self.sharded else None  # FSDP: gathering the full state is a collective
        if self.dist.main:
            self.save_checkpoint(state)
        self.dist.barrier()

    def log_run_info(self, row: dict) -> None:
        """Start a fresh metrics log with one row describing the run."""
        (self.out / "metrics.jsonl").unlink(missing_ok=True)
        self._log(row)

    def _log(self, row: dict) -> None:
        if not self.dist.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric rows logged after the checkpoint being resumed, so no step appears twice."""
    if not path.exists():
        return
    rows = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text("".join(r + "\n" for r in rows))
    os.replace(tmp, path)
