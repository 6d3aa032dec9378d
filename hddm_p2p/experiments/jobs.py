"""Where expert training runs: in this process (``workers: 1``), or in worker processes sharing one device.

A DiT-S/4 step at batch 256 is launch-bound on an H200 (42 ms eager, a fraction of that on the GPU), so
several experts trained at once, each in its own process, fill the device without changing what any one
of them computes: a worker runs the very ``train_expert`` this process would, on the same rows, with the
same seed. Workers are spawned at the start of the run and warm up (CUDA context, ``torch.compile`` of
the blocks) while this process loads data and trains the FD classifier; the training pixels reach them
once, in shared memory. ``measure`` times all workers at once (a barrier starts their clocks together).

    jobs = make_jobs(cfg, "cuda")            # InlineJobs or PoolJobs
    rates = jobs.measure(cfg, x, labels, compile=True, out=...)
    future = jobs.submit(train_expert, cfg, job, x, labels, source, "cuda", compile)
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import torch

from hddm_p2p.experiments.config import ExperimentConfig
from hddm_p2p.experiments.experts import describe_error, make_trainer, measure_rate
from hddm_p2p.train.data import InMemoryData
from hddm_p2p.train.objectives import ObjectiveConfig

_WORKER: dict = {}  # state of a worker process: its barrier and how its warm-up went


def configure_device(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def warm_up(cfg: ExperimentConfig, device: str, compile: bool) -> dict:
    """Two training steps on random pixels: creates the CUDA context and compiles the blocks (cached for
    every later model of this architecture in this process). Errors are reported, not raised."""
    t0, error = time.perf_counter(), None
    res, batch = cfg.data.resolution, cfg.train.batch_size
    x = torch.randint(0, 256, (batch, 3, res, res), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = InMemoryData(x, torch.zeros(batch, dtype=torch.long), [""] * batch, [], "pixel", "warm-up")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = make_trainer(cfg, data, ObjectiveConfig(cond_dropout=0.0), 2, 0, device, Path(tmp), compile)
            for _ in range(2):
                trainer.train_step()
    except Exception as e:
        error = describe_error(e)
    return {"pid": os.getpid(), "warmup_s": round(time.perf_counter() - t0, 2), "warmup_error": error}


def _init_worker(cfg: ExperimentConfig, device: str, compile: bool, barrier) -> None:
    torch.set_num_threads(1)  # the CPU only slices batches; CUDA work is queued from this thread
    configure_device(device)
    if compile:  # the workers compile at once: share the cores instead of each starting one process per core
        import torch._inductor.config as inductor

        inductor.compile_threads = max(1, (os.cpu_count() or 1) // max(1, cfg.train.workers))
    _WORKER.update(barrier=barrier, **warm_up(cfg, device, compile))


def _worker_info() -> dict:
    """This worker's warm-up; returns once every worker has warmed up (so each reports once)."""
    _WORKER["barrier"].wait(timeout=300)
    return {k: _WORKER.get(k) for k in ("pid", "warmup_s", "warmup_error")}


def _measure_in_worker(cfg, x, labels, device, compile, out, seconds) -> dict:
    return {**measure_rate(cfg, x, labels, device, compile, out, seconds, _WORKER["barrier"]), "pid": os.getpid()}


class InlineJobs:
    """Runs each job in this process when it is submitted (training progress bars work here)."""

    workers = 1

    def __init__(self, cfg: ExperimentConfig, device: str, compile: bool):
        self.cfg, self.device, self.compile = cfg, device, compile

    def submit(self, fn, *args, **kwargs) -> Future:
        f: Future = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as e:  # the caller sees it on .result(), as with a process pool
            f.set_exception(e)
        return f

    def warm_up_report(self) -> list[dict]:
        """A compile check (two steps) when compiling; nothing to warm up otherwise."""
        return [warm_up(self.cfg, self.device, True)] if self.compile else []

    def measure(self, cfg, x, labels, compile: bool, out: Path, seconds: float = 3.0) -> list[dict]:
        return [measure_rate(cfg, x, labels, self.device, compile, out, seconds)]

    def close(self, cancel: bool = False) -> None:
        pass


class PoolJobs:
    """``workers`` spawned processes on ``device``; jobs go, in submission order, to the first free one.

    Spawned workers re-import the parent's main module: a script that runs an experiment with workers
    needs the ``if __name__ == "__main__":`` guard (``python -m hddm_p2p.experiments`` has it)."""

    def __init__(self, cfg: ExperimentConfig, workers: int, device: str, compile: bool):
        ctx = mp.get_context("spawn")  # CUDA cannot be forked
        self.workers, self.device = workers, device
        self.barrier = ctx.Barrier(workers)
        self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                        initargs=(cfg, device, compile, self.barrier))
        self._info = [self.pool.submit(_worker_info) for _ in range(workers)]  # spawns every worker now

    def submit(self, fn, *args, **kwargs) -> Future:
        return self.pool.submit(fn, *args, **kwargs)

    def warm_up_report(self) -> list[dict]:
        """Each worker's warm-up (seconds, error); waits until every worker is up."""
        return [f.result() for f in self._info]

    def measure(self, cfg, x, labels, compile: bool, out: Path, seconds: float = 3.0) -> list[dict]:
        """Every worker's step rate while all train at once (one measurement per worker, by the barrier)."""
        x.share_memory_(), labels.share_memory_()  # moved once; every later job passes a handle
        futures = [self.pool.submit(_measure_in_worker, cfg, x, labels, self.device, compile, out / f"w{i}", seconds)
                   for i in range(self.workers)]
        return [f.result() for f in futures]

    def close(self, cancel: bool = False) -> None:
        """Shut the pool down; with ``cancel``, drop queued jobs and stop the workers now."""
        if cancel:
            self.pool.shutdown(wait=False, cancel_futures=True)
            for p in list((getattr(self.pool, "_processes", None) or {}).values()):  # our own children
                p.terminate()
        self.pool.shutdown(wait=True)


def make_jobs(cfg: ExperimentConfig, device: str, compile: bool) -> InlineJobs | PoolJobs:
    if cfg.train.workers > 1:
        return PoolJobs(cfg, cfg.train.workers, device, compile)
    return InlineJobs(cfg, device, compile)
