"""Multi-process training under ``torchrun`` (PyTorch DDP), with checkpoints interchangeable with one device.

Launch the same CLI under torchrun; nothing else changes:

    torchrun --nproc_per_node 2 -m hddm_p2p.cli train expert --data ... --out runs/c0 --batch-size 128

Design (global-batch equivalence): every rank reads the same global batch (B samples, same seeded order)
and draws the same time/noise values from the same generator (B of each), then runs the model on its own
contiguous slice of B/W rows (``Dist.part``). DDP averages the gradients over ranks, which equals the
gradient of the mean loss over the whole batch, so W processes train the model one process would (up to
float summation order), and the data position and generator state — identical on every rank — are what a
single-device checkpoint holds. Rank 0 alone writes checkpoints, metrics and the expert directory.

A rank that dies (killed, OOM) breaks the others' collectives; they raise ``DistributedError`` naming the
dead rank, and the run resumes from the last checkpoint with ``--resume`` at any world size.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from hddm_p2p.errors import DistributedError, SpecError

Tensor = torch.Tensor


@dataclass(frozen=True)
class Dist:
    """This process's place in the job. ``Dist()`` is the single-process case (every method a no-op)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    pids: tuple[tuple[str, int], ...] = field(default=(), compare=False)  # (host, pid) per rank

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def part(self, n: int) -> slice | None:
        """This rank's contiguous rows of a global batch of ``n`` (None: all of it)."""
        if not self.enabled:
            return None
        if n % self.world:
            raise SpecError(f"--batch-size {n} must be divisible by the number of processes ({self.world})")
        k = n // self.world
        return slice(self.rank * k, (self.rank + 1) * k)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to call in training steps: DDP around ``model`` when distributed."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        dev = next(model.parameters()).device
        return DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    def mean(self, x: Tensor) -> Tensor:
        """All-reduce mean of a tensor over ranks (the loss for logging)."""
        if not self.enabled:
            return x
        x = x.detach().clone()
        self.collective(dist.all_reduce, x)
        return x / self.world

    def barrier(self) -> None:
        if self.enabled:
            self.collective(dist.barrier)

    @contextmanager
    def guard(self):
        """Inside: a failed collective (also DDP's all-reduce in ``backward``) becomes a ``DistributedError``."""
        if not self.enabled:
            yield
            return
        try:
            yield
        except (RuntimeError, dist.DistBackendError) as e:
            raise self.failure(_first_line(e)) from None

    def collective(self, fn, *args):
        """Run a collective; a peer's death becomes a ``DistributedError`` naming it."""
        try:
            return fn(*args)
        except (RuntimeError, dist.DistBackendError) as e:
            raise self.failure(_first_line(e)) from None

    def dead_ranks(self) -> list[int]:
        """Ranks on this host whose process is gone (or a zombie)."""
        here = socket.gethostname()
        return [r for r, (host, pid) in enumerate(self.pids) if host == here and r != self.rank and not _alive(pid)]

    def failure(self, cause: str) -> DistributedError:
        """The error naming the dead rank. From here on torchrun's SIGTERM is ignored, so the message is
        printed whole instead of being cut by a second exception."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cause = re.sub(r"\[[^\]]*\]\s*", "", cause).split(". ")[0]  # gloo: "[.../pair.cc:545] Read error…"
        dead, deadline = self.dead_ranks(), time.monotonic() + 3.0
        while not dead and time.monotonic() < deadline:  # its sockets close a moment before it is gone
            time.sleep(0.1)
            dead = self.dead_ranks()
        who = (f"rank {', '.join(map(str, dead))} of {self.world} died" if dead
               else f"another of the {self.world} ranks failed")
        return DistributedError(f"{who} (seen by rank {self.rank}: {cause}); the job stopped. "
                                "Run the same command with --resume to continue from the last checkpoint")


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def is_main_process() -> bool:
    """False in the torchrun processes other than rank 0 (they print nothing for the user)."""
    return int(os.environ.get("RANK", "0")) == 0


def device_for(requested: str, local_rank: int) -> str:
    """Under torchrun each process takes its own GPU: ``cuda`` → ``cuda:<LOCAL_RANK>``."""
    return f"cuda:{local_rank}" if requested == "cuda" else requested


def init_distributed(device: str) -> Dist:
    """Join the torchrun job described by the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
    ``MASTER_ADDR/PORT``); ``Dist()`` when not under torchrun. gloo on CPU, NCCL on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    pids: list = [None] * world
    dist.all_gather_object(pids, (socket.gethostname(), os.getpid()))
    d = Dist(rank, world, local, tuple(tuple(p) for p in pids))
    _raise_on_sigterm(d)
    return d


def _raise_on_sigterm(d: Dist) -> None:
    """torchrun sends SIGTERM to the survivors when a rank dies: turn it into the one-line error."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise d.failure("stopped by torchrun")

    signal.signal(signal.SIGTERM, handler)


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
