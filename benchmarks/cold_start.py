"""Cold start: time to the first image with K lazily loaded experts vs the time to read the routed ones from disk.

    python benchmarks/cold_start.py --arch DiT-XL/2 --experts 8 --routed 2 --device cuda --dtype bf16   # GPU
    python benchmarks/cold_start.py --arch tiny --input-size 8 --experts 4 --routed 2 --steps 2      # CPU toy

The script writes K random-weight DiT experts (``hddm_p2p.models.build_dit`` + the trainer's
``write_weights``: one ``model.safetensors`` each, architecture in the metadata) and a router that sends every
sample to the same ``--routed`` experts. Per round (``--repeat``, medians reported):

- **read**: the routed experts' weight files evicted from the page cache (``posix_fadvise(DONTNEED)``, only
  those files), then read start to end with ``readinto`` — the disk floor for loading them;
- **first image**: evicted again, then the path ``hddm generate`` takes after verifying its lock: one
  ``LazyExpert`` per expert (``load_weights``: meta-device DiT, memory-mapped safetensors assigned, only the
  header read up front), an ``Ensemble`` (top-k), ``sample`` for ``--steps`` steps of one batch to an image;
- **warm**: the same ``sample`` again with the experts loaded (compute only).

Once-per-process costs (the first ``load_weights`` call, thread pools, the CUDA context) are paid before the
first round on a throwaway tiny expert; they are the same with or without experts.

Reports first image ÷ read (issue 8 item 5: target ≤ 1.5 for 8 DiT-XL/2 experts on a GPU) and checks that the
experts no sample is routed to were never loaded. ``hddm generate`` itself needs a signed, assembled lock
(publish + assemble); this measures the same loading and sampling calls without the manifest checks.
Writes ``cold_start.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from hddm_p2p.diffusion import Ensemble, ExpertSpec
from hddm_p2p.models import build_dit
from hddm_p2p.models.loading import load_weights
from hddm_p2p.pipeline.lazy import LazyExpert
from hddm_p2p.train.expert_dir import write_weights

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def make_experts(work: Path, arch: str, k: int, input_size: int, channels: int, device: str = "cpu") -> list[Path]:
    """K random-weight experts of ``arch`` (initialised on ``device``: XL/2 is slow to initialise on a host);
    each a distinct fp32 ``model.safetensors`` under ``work``."""
    paths = []
    for i in range(k):
        torch.manual_seed(i)
        with torch.device(device):
            model = build_dit(arch, input_size=input_size, in_channels=channels)
        path = work / f"expert{i}" / "model.safetensors"
        path.parent.mkdir(parents=True)
        write_weights(path, {n: v.cpu() for n, v in model.state_dict().items()}, model.config)
        paths.append(path)
        del model
    return paths


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the page cache (they are clean), so the next read comes from disk."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_files(paths: list[Path]) -> float:
    """Seconds to read ``paths`` start to end (``readinto`` a reused 8 MiB buffer)."""
    buf = bytearray(8 << 20)
    start = time.perf_counter()
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    return time.perf_counter() - start


class FixedRouter:
    """Logits (B, K) that put every sample on the same experts (``chosen``), in a fixed order of preference."""

    def __init__(self, k: int, chosen: list[int]):
        self.logits = torch.full((k,), -10.0)
        for rank, i in enumerate(chosen):
            self.logits[i] = 10.0 - rank

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.logits.to(x.device).expand(x.shape[0], -1)


def sample_once(paths: list[Path], chosen: list[int], args, experts: list[LazyExpert] | None = None):
    """(seconds, LazyExperts) for building the lazy ensemble (unless given) and sampling one batch."""
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    start = time.perf_counter()
    if experts is None:
        experts = [LazyExpert(p, load_weights, device=args.device, dtype=DTYPES[args.dtype]) for p in paths]
    spec = ExpertSpec("velocity", "flow-linear")
    ens = Ensemble([(e, spec) for e in experts], FixedRouter(len(paths), chosen), mode="top-k", k=len(chosen))
    noise = torch.randn(args.batch, args.channels, args.input_size, args.input_size,
                        generator=torch.Generator().manual_seed(0)).to(args.device)
    image = ens.sample(noise, steps=args.steps)
    sync()
    if not torch.isfinite(image).all():
        raise SystemExit("the sampled image is not finite")
    return time.perf_counter() - start, experts


def warm_up_process(args, work: Path) -> None:
    """Pay the once-per-process costs (first ``load_weights``: ~2 s of imports and meta-device set-up on a CPU;
    thread pools; the CUDA context) on a throwaway tiny expert before any round: they are the same with or
    without experts, and would otherwise land on the first round only."""
    path = make_experts(work / "warm-up", "tiny", 1, 8, args.channels)[0]
    model = load_weights(path, args.device)
    with torch.no_grad():
        model(torch.zeros(1, args.channels, 8, 8, device=args.device), torch.zeros(1, device=args.device))


def one_round(paths: list[Path], chosen: list[int], args) -> dict:
    routed = [paths[i] for i in chosen]
    evict(routed)
    read_s = read_files(routed)
    evict(routed)
    first_s, experts = sample_once(paths, chosen, args)
    warm_s, _ = sample_once(paths, chosen, args, experts)
    never = [i for i, e in enumerate(experts) if i not in chosen and e.loads]
    if never or any(experts[i].loads != 1 for i in chosen):
        raise SystemExit(f"lazy loading broke: loads per expert {[e.loads for e in experts]}, routed {chosen}")
    return {"read_s": read_s, "first_image_s": first_s, "warm_sample_s": warm_s}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="tiny", help="DiT preset of every expert (e.g. DiT-XL/2 on a GPU)")
    parser.add_argument("--experts", type=int, default=8, help="K experts in the ensemble")
    parser.add_argument("--routed", type=int, default=2, help="experts the router sends samples to (top-k)")
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=1, help="sampler steps to the first image")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--workdir", type=Path, default=None, help="where the experts are written (default /tmp)")
    args = parser.parse_args(argv)
    if not 1 <= args.routed <= args.experts:
        raise SystemExit(f"--routed must be between 1 and --experts ({args.experts})")
    chosen = list(range(args.experts - args.routed, args.experts))  # the last ones: not the first files written
    with tempfile.TemporaryDirectory(prefix="hddm-cold-", dir=args.workdir) as tmp:
        paths = make_experts(Path(tmp), args.arch, args.experts, args.input_size, args.channels, args.device)
        sizes = [p.stat().st_size for p in paths]
        warm_up_process(args, Path(tmp))
        rounds = [one_round(paths, chosen, args) for _ in range(args.repeat)]
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    result = {"arch": args.arch, "experts": args.experts, "routed": chosen, "device": args.device,
              "dtype": args.dtype, "steps": args.steps, "batch": args.batch, "bytes_per_expert": sizes[0],
              "routed_bytes": sum(sizes[i] for i in chosen), "rounds": rounds, "median": med,
              "first_image_over_read": med["first_image_s"] / med["read_s"],
              # paired: each round's first image over the same round's read (the disk's speed drifts)
              "median_round_ratio": statistics.median(r["first_image_s"] / r["read_s"] for r in rounds)}
    print(f"{args.experts} × {args.arch} experts ({sizes[0] / 2**20:.1f} MiB each), {args.routed} routed; "
          f"{args.device} {args.dtype}, {args.steps} step(s), batch {args.batch}; median of {args.repeat}")
    print(f"read routed weights (cold)   {med['read_s']:.3f} s   ({result['routed_bytes'] / 1e6 / med['read_s']:.0f} MB/s)")
    print(f"first image (cold, lazy)     {med['first_image_s']:.3f} s")
    print(f"same sampling, warm          {med['warm_sample_s']:.3f} s")
    print(f"first image ÷ read           {result['first_image_over_read']:.2f}× (ratio of medians), "
          f"{result['median_round_ratio']:.2f}× (median of per-round ratios)   (unrouted experts loaded: 0)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cold_start.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
