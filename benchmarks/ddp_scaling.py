"""DDP scaling of expert training: images/s on 1 GPU vs N GPUs (torchrun), and the scaling efficiency
N-GPU images/s ÷ (N × 1-GPU images/s). Weak scaling: each GPU processes ``--batch`` images per step, so the
N-GPU run uses a global batch of N·batch (hddm's DDP gives each rank a contiguous 1/N of the global batch).

    python benchmarks/ddp_scaling.py --arch DiT-B/2 --batch 256 --gpus 2        # needs 2 GPUs
    python benchmarks/ddp_scaling.py --arch tiny --batch 8 --steps 4 --device cpu  # toy run on CPU (gloo)

The launcher runs this file twice as workers: once as one plain process, once under
``torchrun --nproc_per_node N --master_addr 127.0.0.1``. Each worker trains the real ``Trainer`` (forward,
backward with DDP all-reduce, grad clip, AdamW, EMA) on synthetic latents (32×32×4, unconditional,
flow matching, bf16 autocast on CUDA), times ``--steps`` steps after ``--warmup`` (CUDA-synchronised wall
clock on rank 0) and writes one JSON line; the launcher prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _worker(args) -> None:
    import torch

    from hddm_p2p.models import build_dit
    from hddm_p2p.train.data import InMemoryData, MemorySource
    from hddm_p2p.train.distributed import device_for, init_distributed, shutdown
    from hddm_p2p.train.loop import TrainConfig, Trainer
    from hddm_p2p.train.objectives import ObjectiveConfig

    d = init_distributed(args.device)
    device = device_for(args.device, d.local_rank)
    batch = args.batch * d.world  # global batch: args.batch per GPU
    g = torch.Generator().manual_seed(0)
    n = batch * 4
    data = InMemoryData(torch.randn(n, 4, 32, 32, generator=g).half(), torch.full((n,), -1), [""] * n, [],
                        "latent", "synthetic")
    torch.manual_seed(0)
    model = build_dit(args.arch, input_size=32, in_channels=4)
    cfg = TrainConfig(steps=10**9, batch_size=batch, lr=1e-4, ckpt_every=10**9, device=device)
    obj = ObjectiveConfig("fm", "flow-linear")
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, MemorySource(data, batch, 0), obj, cfg, Path(out), dist=d)
        trainer.model.train()
        for _ in range(args.warmup):
            trainer.train_step()
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        sync()
        d.barrier()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        sync()
        d.barrier()
        dt = time.perf_counter() - t0
    if d.main:
        with open(args.result, "a") as f:
            f.write(json.dumps({"gpus": d.world, "global_batch": batch, "ms_per_step": 1000 * dt / args.steps,
                                "images_per_s": batch * args.steps / dt}) + "\n")
    shutdown(d)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args) -> None:
    me = [sys.executable, __file__, "--worker", "--arch", args.arch, "--batch", str(args.batch), "--steps",
          str(args.steps), "--warmup", str(args.warmup), "--device", args.device]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.jsonl"
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        subprocess.run(me + ["--result", str(result)], check=True, env=env)
        subprocess.run([torchrun, "--nproc_per_node", str(args.gpus), "--master_addr", "127.0.0.1",
                        "--master_port", str(_free_port()), *me[1:], "--result", str(result)], check=True, env=env)
        rows = [json.loads(line) for line in result.read_text().splitlines()]
    one, many = rows
    eff = many["images_per_s"] / (args.gpus * one["images_per_s"])
    print(f"arch {args.arch}, {args.batch} images per GPU per step, device {args.device}")
    print("| GPUs | global batch | ms/step | img/s | scaling efficiency |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| 1 | {one['global_batch']} | {one['ms_per_step']:.1f} | {one['images_per_s']:.1f} | 1.00 |")
    print(f"| {args.gpus} | {many['global_batch']} | {many['ms_per_step']:.1f} | {many['images_per_s']:.1f} "
          f"| {eff:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="DiT-B/2")
    p.add_argument("--batch", type=int, default=256, help="images per GPU per step")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--gpus", type=int, default=2)
    p.add_argument("--device", default="cuda", help="cuda (one GPU per process) or cpu (gloo, toy check)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    _worker(args) if args.worker else _launch(args)


if __name__ == "__main__":
    main()
