"""``hddm data encode``: precompute VAE latents of a dataset once, for latent-space experts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hddm_p2p.cli.options import Device, OutDir
from hddm_p2p.cli.root import console, data_app

Opt = typer.Option


@data_app.command("encode")
def data_encode_cmd(
    data: Annotated[str, Opt("--data", help="Shard file, glob (quote it), or image folder.")],
    out: OutDir,
    vae: Annotated[str, Opt(help="diffusers AutoencoderKL: hub id, local dir, or tiny-random.")] = "stabilityai/sd-vae-ft-mse",
    image_resolution: Annotated[int, Opt("--image-resolution", help="Images are resized to this before encoding.")] = 256,
    batch_size: Annotated[int, Opt("--batch-size")] = 32,
    shard_size: Annotated[int, Opt("--shard-size", help="Latents per output shard.")] = 10_000,
    limit: Annotated[Optional[int], Opt(help="Encode at most this many images.")] = None,
    device: Device = "auto",
) -> None:
    """Encode images to scaled VAE latents in safetensors shards (OUT/latents-*.safetensors + OUT/latents.json).

    Example: hddm data encode --data 'laion/{00000..00099}.tar' --out latents/ --vae stabilityai/sd-vae-ft-mse

    Under torchrun the processes share the encoding: torchrun --nproc_per_node 2 -m hddm_p2p.cli data encode ...
    """
    import torch
    from rich.progress import Progress

    from hddm_p2p.train.data import Filter
    from hddm_p2p.train.distributed import device_for, init_distributed, shutdown
    from hddm_p2p.train.encode import encode_dataset

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    d = init_distributed(dev)  # under torchrun: rank r encodes shards i ≡ r (mod world); rank 0 writes the index
    try:
        with Progress(console=console, disable=not d.main) as bar:
            task = bar.add_task("encode", total=limit)
            path = encode_dataset(data, Path(out), vae, image_resolution, batch_size, shard_size,
                                  device_for(dev, d.local_rank), Filter(limit=limit),
                                  progress=lambda n: bar.advance(task, n), dist=d)
    finally:
        shutdown(d)
    if not d.main:
        return
    console.print(f"latents written to [bold]{path}[/]")
