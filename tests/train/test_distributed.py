"""``hddm train expert`` under real ``torchrun`` (2 processes, gloo, CPU) against one process.

- the two-process run trains the same model as the one-process run (global-batch equivalence), and its
  checkpoint resumes in one process (checkpoints are interchangeable);
- killing rank 1 mid-run fails the job with a one-line error naming rank 1; ``--resume`` continues.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hddm_p2p.train.loop import CHECKPOINT

HDDM = Path(sys.executable).with_name("hddm")
TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cmd(shard: Path, out: Path, steps: int, nproc: int, *extra: str) -> list[str]:
    args = ["train", "expert", "--data", str(shard), "--limit", "64", "--arch", "tiny", "--steps", str(steps),
            "--batch-size", "8", "--lr", "1e-3", "--warmup", "2", "--ckpt-every", "2", "--log-every", "1",
            "--device", "cpu", "--out", str(out), *extra]
    if nproc == 1:
        return [str(HDDM), *args]
    return [str(TORCHRUN), "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
            "--master_port", str(_free_port()), str(HDDM), *args]


def _run(cmd: list[str], code: int = 0) -> str:
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == code, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_two_processes_train_what_one_does_and_checkpoints_interchange(cifar_shard, tmp_path):
    _run(_cmd(cifar_shard, tmp_path / "one", 6, 1))
    _run(_cmd(cifar_shard, tmp_path / "two", 4, 2))  # DDP to step 4 …
    out = _run(_cmd(cifar_shard, tmp_path / "two", 6, 1, "--resume"))  # … then one process to step 6
    assert out.count("expert written") == 1
    one, two = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert _max_diff(one, two) < 1e-5
    ca = torch.load(tmp_path / "one" / CHECKPOINT, weights_only=True)
    cb = torch.load(tmp_path / "two" / CHECKPOINT, weights_only=True)
    assert ca["step"] == cb["step"] == 6 and ca["data"] == cb["data"]
    assert torch.equal(ca["generator"], cb["generator"])
    assert _max_diff(ca["model"], cb["model"]) < 1e-5


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of the torchrun worker with ``RANK=rank`` among ``parent``'s children."""
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        try:
            env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return int(child)
    return None


def test_killed_rank_fails_the_job_naming_it_and_resume_continues(cifar_shard, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(cifar_shard, out, 100_000, 2), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / CHECKPOINT).exists():  # training is under way: checkpoints every 2 steps
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-2000:]
            time.sleep(0.2)
        time.sleep(1.0)
        pid = _rank_pid(proc.pid, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        log, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    ours = [ln for ln in log.splitlines() if "error: " in ln]
    assert any("rank 1 of 2 died" in ln and "--resume" in ln for ln in ours), log[-3000:]
    assert "[rank0]: Traceback" not in log  # the surviving rank failed with a message, not a traceback
    step = torch.load(out / CHECKPOINT, weights_only=True)["step"]
    assert step >= 2
    _run(_cmd(cifar_shard, out, step + 2, 2, "--resume"))
    assert torch.load(out / CHECKPOINT, weights_only=True)["step"] == step + 2
    assert (out / "model.safetensors").exists()
