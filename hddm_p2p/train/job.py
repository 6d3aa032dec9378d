"""``train_expert``: everything ``hddm train expert`` does, as one library call.

Order matters for bad input: the architecture, objective, data path, cluster and checkpoint shapes are
all checked before the first training step, so a typo fails in seconds with a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hddm_p2p.errors import DataError, SpecError
from hddm_p2p.models.dit import DiT, DiTConfig, get_preset
from hddm_p2p.train.data import (Batch, Filter, InMemoryData, MemorySource, check_channels, load_in_memory,
                                 resolve_source)
from hddm_p2p.train.distributed import Dist, device_for, init_distributed, shutdown
from hddm_p2p.train.expert_dir import conditioning, data_space, describe, write_expert_dir
from hddm_p2p.train.loop import CHECKPOINT, TrainConfig, Trainer
from hddm_p2p.train.objectives import ObjectiveConfig


@dataclass(frozen=True)
class ExpertJob:
    """One expert-training run (the CLI's flags)."""

    data: str
    out: Path
    objective: ObjectiveConfig = ObjectiveConfig()
    train: TrainConfig = TrainConfig()
    arch: str = "DiT-B/2"
    adaln: str = "single"
    space: str = "pixel"
    resolution: int = 32
    channels: int = 3               # images decoded as RGB (3) or grey (1); latents keep their own
    condition: str = "none"
    num_classes: int | None = None
    text_encoder: str = "bytes-32"
    max_tokens: int = 32
    init_from: Path | None = None
    assignments: Path | None = None
    cluster_id: int | None = None
    labels: tuple[int, ...] | None = None
    limit: int | None = None
    resume: bool = False
    stream: bool = False            # stream shards instead of decoding them into memory
    name: str | None = None
    extra: dict = field(default_factory=dict)


def _progress(console=None) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False)


def _check_job(job: ExpertJob) -> tuple[DiTConfig, Filter, dict | None]:
    if job.space not in ("pixel", "latent"):
        raise SpecError(f"unknown space {job.space!r}; choose pixel or latent")
    get_preset(job.arch)  # unknown preset → SpecError listing the valid ones
    check_channels(job.channels)
    kind, _ = resolve_source(job.data)
    if job.space == "latent" and kind != "latents":
        raise DataError(f"--space latent needs latent shards (run `hddm data encode`); {job.data} holds {kind}")
    if (job.assignments is None) != (job.cluster_id is None):
        raise SpecError("--assignments and --cluster go together; pass both or neither")
    keys, cluster = None, None
    if job.assignments is not None:
        from hddm_p2p.train.cluster import read_cluster

        keys, cluster = read_cluster(Path(job.assignments), job.cluster_id)
    flt = Filter(keys, frozenset(job.labels) if job.labels else None, job.limit)
    ckpt = job.out / CHECKPOINT
    if ckpt.exists() and not job.resume:
        raise SpecError(f"{job.out} already holds a training checkpoint; pass --resume or choose another --out")
    return get_preset(job.arch), flt, cluster


def _model_config(job: ExpertJob, data: InMemoryData, text_width: int) -> DiTConfig:
    channels, size = data.x.shape[1], data.x.shape[-1]
    num_classes = job.num_classes or (int(data.labels.max()) + 1 if job.condition == "class" else 0)
    if job.condition == "class" and num_classes < 1:
        raise DataError(f"--condition class needs class labels; {job.data} has none (no `cls` members)")
    return get_preset(job.arch, input_size=size, in_channels=channels, adaln=job.adaln, condition=job.condition,
                      num_classes=num_classes if job.condition == "class" else 0,
                      text_width=text_width if job.condition == "text" else 0,
                      max_tokens=job.max_tokens if job.condition == "text" else 0)


def _build(job: ExpertJob, cfg: DiTConfig) -> tuple[DiT, ObjectiveConfig]:
    torch.manual_seed(job.train.seed)
    if job.init_from is None:
        return DiT(cfg), job.objective
    from hddm_p2p.models.convert import init_from_dit_checkpoint

    model = init_from_dit_checkpoint(Path(job.init_from), cfg)
    obj = job.objective
    if obj.time_scale != 999:  # pretrained embedder expects t_DiT = round(999·s)
        obj = ObjectiveConfig(**{**obj.__dict__, "time_scale": 999.0})
    return model, obj


def _cond_fn(job: ExpertJob, encoder, device):
    """Batch → the model's condition: None, class ids (B,) or text tokens/mask, on ``device``."""
    if job.condition == "class":
        return lambda batch: batch.labels.to(device)
    if job.condition != "text":
        return lambda batch: None
    cache: dict[str, tuple] = {}  # caption → (tokens (L, E), mask (L,)); CIFAR has 10 distinct captions

    def encode(batch: Batch):
        missing = sorted(set(batch.captions) - cache.keys())
        if len(cache) + len(missing) > 50_000:
            cache.clear()
            missing = sorted(set(batch.captions))
        if missing:
            out = encoder(missing)
            cache.update({c: (out["tokens"][i], out["mask"][i]) for i, c in enumerate(missing)})
        return {"tokens": torch.stack([cache[c][0] for c in batch.captions]).to(device),
                "mask": torch.stack([cache[c][1] for c in batch.captions]).to(device)}
    return encode


def _source(job: ExpertJob, flt: Filter, console, show_progress: bool):
    """(data source, InMemoryData or None): a shard stream, or data decoded once into memory."""
    if job.stream:
        from hddm_p2p.train.stream import ShardStream

        kind, files = resolve_source(job.data)
        if kind != "shards":
            raise SpecError(f"--stream reads tar shards; {job.data} holds {kind}")
        if job.channels != 3:
            raise SpecError("--stream decodes RGB only; train greyscale data in memory (without --stream)")
        if job.condition == "class" and not job.num_classes:
            raise SpecError("--stream with --condition class needs --num-classes")
        stream = ShardStream(files, job.resolution, job.train.batch_size, job.train.seed, flt)
        first = stream.next()  # fail now, not at step 1, on unreadable data; then rewind
        stream.load_state_dict({"epoch": 0, "offset": 0})
        data = InMemoryData(first.x[:1], first.labels[:1], first.captions[:1], [], "pixel", job.data)
        return stream, data
    with _progress(console) as bar:
        task = bar.add_task("decode data", total=None, info="", visible=show_progress)
        data = load_in_memory(job.data, job.resolution, flt, progress=lambda n: bar.advance(task, n),
                              channels=job.channels)
        bar.update(task, total=len(data) + data.skipped, completed=len(data) + data.skipped,
                   info=f"{len(data)} samples, {data.skipped} skipped")
    return MemorySource(data, job.train.batch_size, job.train.seed), data


def _run_info(job: ExpertJob, obj: ObjectiveConfig, data: InMemoryData) -> dict:
    """Step-0 row of metrics.jsonl: settings that expert.json's fixed ``training`` block has no field for."""
    return {"step": 0, "event": "start", "arch": job.arch, "adaln": job.adaln, "lr": job.train.lr,
            "warmup_steps": job.train.warmup_steps, "ema_decay": job.train.ema_decay, "grad_clip": job.train.grad_clip,
            "time_sampling": obj.time_sampling, "cond_dropout": obj.cond_dropout, "precision": job.train.precision,
            "compile": job.train.compile, "residual": job.train.residual, "stream": job.stream,
            "samples": None if job.stream else len(data),
            "skipped_samples": data.skipped, "init_from": str(job.init_from) if job.init_from else None,
            "labels": list(job.labels) if job.labels else None, "cluster_id": job.cluster_id}


def train_expert(job: ExpertJob, console=None, show_progress: bool = True) -> Path:
    """Train one expert and write its directory (``model.safetensors``, ``expert.json``, ``metrics.jsonl``).

    Under ``torchrun`` every process runs this; they train one model with DDP (``hddm_p2p.train.distributed``)."""
    d = init_distributed(job.train.device)
    try:
        if d.enabled:
            job = replace(job, train=replace(job.train, device=device_for(job.train.device, d.local_rank)))
        return _train_expert(job, console, show_progress and d.main, d)
    finally:
        shutdown(d)


def _train_expert(job: ExpertJob, console, show_progress: bool, d: Dist) -> Path:
    _, flt, cluster = _check_job(job)
    source, data = _source(job, flt, console, show_progress)
    encoder = None
    if job.condition == "text":
        from hddm_p2p.train.text import get_text_encoder

        encoder = get_text_encoder(job.text_encoder, job.max_tokens)
    cfg = _model_config(job, data, encoder.width if encoder else 0)
    model, obj = _build(job, cfg)
    cfg = model.config
    trainer = Trainer(model, source, obj, job.train, job.out, _cond_fn(job, encoder, job.train.device), dist=d)
    if not (job.resume and trainer.load_checkpoint()):
        trainer.log_run_info(_run_info(job, obj, data))
    with _progress(console) as bar:
        task = bar.add_task("train", total=job.train.steps, completed=trainer.step, info="", visible=show_progress)

        def tick(step, loss, rate):
            info = {} if loss is None else {"info": f"loss {loss:.4f} · {rate:.1f} img/s"}
            bar.update(task, completed=step, **info)
        result = trainer.run(tick)
    ema = trainer.ema.state_dict()  # under FSDP a collective: every rank gathers, rank 0 gets the full tensors
    if d.main:
        _write(job, cfg, obj, data, ema, result, cluster, encoder)
    d.barrier()
    return Path(job.out)


def _write(job, cfg, obj, data, ema, result, cluster, encoder) -> Path:
    space = data_space(job.space, cfg.input_size, cfg.in_channels, data.meta.get("vae"))
    cond = conditioning(cfg, data.meta.get("class_names"), encoder.description if encoder else None)
    name = job.name or f"{Path(job.out).name}"
    training = {"steps": result.step, "batch_size": job.train.batch_size, "seed": job.train.seed,
                "final_loss": result.final_loss, "images_seen": result.images_seen,
                "wall_time_s": round(result.wall_time_s, 3), "device": job.train.device, "dataset": job.data}
    desc = describe(name, obj, cfg, space, cond, cluster, training)
    return write_expert_dir(Path(job.out), ema, cfg, desc)
