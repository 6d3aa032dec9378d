"""``hddm train expert``: train one diffusion expert on one device and write its expert directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hddm_p2p.cli.options import Device, OutDir, Seed
from hddm_p2p.cli.root import console, train_app

Opt = typer.Option


@train_app.command("expert")
def train_expert_cmd(
    data: Annotated[str, Opt("--data", help="Shard file, glob (quote it), image folder, or latent-shard directory.")],
    out: OutDir,
    objective: Annotated[str, Opt(help="ddpm | fm | x0 | v")] = "fm",
    schedule: Annotated[str, Opt(help="flow-linear | vp-cosine | vp-linear")] = "flow-linear",
    arch: Annotated[str, Opt(help="DiT preset: tiny, DiT-S/2, DiT-B/2, DiT-L/2, DiT-XL/2.")] = "DiT-B/2",
    adaln: Annotated[str, Opt(help="single (PixArt-α AdaLN-Single) | zero (DiT AdaLN-Zero)")] = "single",
    steps: Annotated[int, Opt(help="Optimizer steps.")] = 1000,
    batch_size: Annotated[int, Opt("--batch-size")] = 64,
    lr: Annotated[float, Opt(help="AdamW learning rate.")] = 1e-4,
    warmup: Annotated[int, Opt(help="Linear warmup steps.")] = 100,
    ema_decay: Annotated[float, Opt("--ema-decay")] = 0.9999,
    space: Annotated[str, Opt(help="pixel | latent (latent needs `hddm data encode` shards)")] = "pixel",
    resolution: Annotated[int, Opt(help="Pixel resolution images are resized to.")] = 32,
    condition: Annotated[str, Opt(help="none | class | text")] = "none",
    text_encoder: Annotated[str, Opt("--text-encoder", help="HF model id, or bytes-<width> (offline).")] = "bytes-32",
    cond_dropout: Annotated[float, Opt("--cond-dropout", help="Label/caption dropout for CFG.")] = 0.1,
    time_sampling: Annotated[str, Opt("--time-sampling", help="uniform | logit-normal")] = "uniform",
    time_scale: Annotated[float, Opt("--time-scale", help="Model sees t = time_scale·s (999 with --init-from).")] = 1000.0,
    init_from: Annotated[Optional[Path], Opt("--init-from", help="facebookresearch/DiT checkpoint (.pt).")] = None,
    assignments: Annotated[Optional[Path], Opt(help="Clustering output DIR/assignments.json.")] = None,
    cluster: Annotated[Optional[int], Opt("--cluster", "--cluster-id", help="Cluster id to train on.")] = None,
    labels: Annotated[Optional[str], Opt(help="Comma-separated class ids to keep, e.g. 0,1,8.")] = None,
    limit: Annotated[Optional[int], Opt(help="Use at most this many samples.")] = None,
    num_classes: Annotated[Optional[int], Opt("--num-classes", help="Classes (default: largest label + 1).")] = None,
    stream: Annotated[bool, Opt("--stream", help="Stream tar shards (large data) instead of decoding into memory.")] = False,
    ckpt_every: Annotated[int, Opt("--ckpt-every", help="Checkpoint interval in steps.")] = 500,
    log_every: Annotated[int, Opt("--log-every")] = 10,
    compile: Annotated[bool, Opt("--compile", help="torch.compile the model.")] = False,
    fp32_residual: Annotated[bool, Opt("--fp32-residual", help="Keep the residual stream in fp32 under bf16 "
                                       "autocast, as DiT did (default on a GPU: bf16, faster).")] = False,
    name: Annotated[Optional[str], Opt(help="Expert name (default: the --out folder name).")] = None,
    seed: Seed = 0,
    device: Device = "auto",
    resume: Annotated[bool, Opt("--resume", help="Continue from OUT/checkpoints/last.pt.")] = False,
    fsdp: Annotated[bool, Opt("--fsdp", help="Under torchrun: shard the model over the processes (FSDP) "
                              "instead of replicating it (DDP); checkpoints stay single-device.")] = False,
) -> None:
    """Train a DiT expert with one objective on one data partition; writes OUT/{model.safetensors, expert.json,
    metrics.jsonl}.

    Example: hddm train expert --data 'cifar10/train-*.tar.gz' --objective ddpm --schedule vp-linear \\
    --arch DiT-S/2 --steps 20000 --batch-size 128 --out experts/c0 --assignments clusters/assignments.json --cluster 0
    """
    from hddm_p2p.errors import SpecError
    from hddm_p2p.train.distributed import is_main_process
    from hddm_p2p.train.job import ExpertJob, train_expert
    from hddm_p2p.train.loop import TrainConfig
    from hddm_p2p.train.objectives import ObjectiveConfig

    import torch

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    try:
        keep = tuple(int(v) for v in labels.split(",")) if labels else None
    except ValueError:
        raise SpecError(f"--labels must be comma-separated integers, got {labels!r}") from None
    obj = ObjectiveConfig(objective, schedule, time_sampling, time_scale=time_scale, cond_dropout=cond_dropout)
    train = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup, ema_decay=ema_decay,
                        ckpt_every=ckpt_every, log_every=log_every, seed=seed, device=dev, compile=compile,
                        fsdp=fsdp, residual="fp32" if fp32_residual else "auto")
    job = ExpertJob(data=data, out=out, objective=obj, train=train, arch=arch, adaln=adaln, space=space,
                    resolution=resolution, condition=condition, text_encoder=text_encoder, init_from=init_from,
                    assignments=assignments, cluster_id=cluster, labels=keep, limit=limit, resume=resume, name=name,
                    num_classes=num_classes, stream=stream)
    path = train_expert(job, console=console)
    if is_main_process():
        console.print(f"expert written to [bold]{path}[/] (model.safetensors, expert.json, metrics.jsonl)")
