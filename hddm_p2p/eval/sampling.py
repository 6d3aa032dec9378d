"""Batched, resumable evaluation sampling, sharded over processes (e.g. ``torchrun --nproc_per_node 8``).

Sample ``i`` of ``n`` belongs to rank ``i mod world_size`` and gets its own seed ``sample_seed(seed, i)``,
so image ``i`` is the same whatever the world size or batch composition, provided ``sampler_fn`` draws
all its randomness from the seeds it is given (``per_sample_noise`` does that for the initial noise).
Each rank writes ``out_dir/rank-RRR-of-WWW/IIIIII.png`` (atomically; existing files are skipped, so an
interrupted run resumes); ``merge_shards`` then moves them to ``out_dir/IIIIII.png`` and checks that
all ``n`` are there::

    def sampler_fn(indices, seeds):                  # -> uint8 (B,3,H,W) or float in [-1, 1]
        noise = per_sample_noise(seeds, (3, 32, 32))
        return ensemble.sample(noise, steps=50, cond=torch.tensor(indices) % 10)

    sample_for_eval_distributed(sampler_fn, n=10_000, batch=250, out_dir=Path("samples"), seed=0)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Sequence

import torch
from rich.progress import Progress

from hddm_p2p.errors import DataError, ShapeError
from hddm_p2p.eval.images import save_png, to_uint8

SamplerFn = Callable[[list[int], list[int]], torch.Tensor]  # (global indices, per-sample seeds) -> (B, 3, H, W)
_PNG = re.compile(r"^(\d{6,})\.png$")


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of a run seeded ``seed`` (SplitMix64 finaliser: nearby inputs decorrelate)."""
    z = (seed * 0x9E3779B97F4A7C15 + index + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) >> 1


def per_sample_noise(seeds: Sequence[int], shape: Sequence[int], device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gaussian noise (B, *shape), row k drawn from its own generator seeded ``seeds[k]`` (on CPU, then moved)."""
    rows = [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return torch.stack(rows).to(device=device, dtype=dtype)


def shard_dir(out_dir: Path, rank: int, world_size: int) -> Path:
    return Path(out_dir) / f"rank-{rank:03d}-of-{world_size:03d}"


def png_name(index: int) -> str:
    return f"{index:06d}.png"


def sample_for_eval(sampler_fn: SamplerFn, n: int, batch: int, out_dir: Path, rank: int = 0, world_size: int = 1,
                    seed: int = 0, progress: bool = True) -> list[Path]:
    """Write this rank's share of ``n`` samples as PNGs (see module docstring); returns their paths in index order."""
    if not 0 <= rank < world_size or n < 1 or batch < 1:
        raise DataError(f"bad sharding: rank {rank}, world size {world_size}, n {n}, batch {batch}")
    shard = shard_dir(out_dir, rank, world_size)
    mine = list(range(rank, n, world_size))
    todo = [i for i in mine if not (shard / png_name(i)).exists() and not (Path(out_dir) / png_name(i)).exists()]
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"sampling (rank {rank}/{world_size})", total=len(mine), completed=len(mine) - len(todo))
        for k in range(0, len(todo), batch):
            idx = todo[k:k + batch]
            images = to_uint8(sampler_fn(idx, [sample_seed(seed, i) for i in idx]))
            if images.ndim != 4 or images.shape[0] != len(idx) or images.shape[1] != 3:
                raise ShapeError(f"sampler_fn returned {tuple(images.shape)} for {len(idx)} indices; "
                                 "it must return (B, 3, H, W)")
            for i, img in zip(idx, images.cpu()):
                save_png(img, shard / png_name(i))
            bar.advance(task, len(idx))
    return [shard / png_name(i) if (shard / png_name(i)).exists() else Path(out_dir) / png_name(i) for i in mine]


def merge_shards(out_dir: Path, n: int) -> list[Path]:
    """Move every rank's PNGs to ``out_dir/IIIIII.png``; DataError naming what is missing unless all ``n`` exist."""
    out_dir = Path(out_dir)
    for shard in sorted(out_dir.glob("rank-*-of-*")):
        for f in shard.iterdir():
            if _PNG.match(f.name):
                os.replace(f, out_dir / f.name)
        if not any(shard.iterdir()):
            shard.rmdir()
    missing = [i for i in range(n) if not (out_dir / png_name(i)).exists()]
    if missing:
        raise DataError(f"{len(missing)} of {n} samples are missing in {out_dir} (first: {missing[:5]}); "
                        "run the sampling again with the same seed to fill them in")
    return [out_dir / png_name(i) for i in range(n)]


def dist_rank_world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) in a plain process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def sample_for_eval_distributed(sampler_fn: SamplerFn, n: int, batch: int, out_dir: Path, seed: int = 0,
                                progress: bool = True) -> list[Path]:
    """Under torchrun: each rank samples its share, rank 0 merges after a barrier (gloo unless a group exists)."""
    rank, world = dist_rank_world()
    sample_for_eval(sampler_fn, n, batch, out_dir, rank, world, seed, progress and rank == 0)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        dist.barrier()
        if rank == 0:
            merge_shards(out_dir, n)
        dist.barrier()
        return [Path(out_dir) / png_name(i) for i in range(n)]
    return merge_shards(out_dir, n)
