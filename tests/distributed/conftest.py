"""Run a worker of ``tests/distributed/workers.py`` under real ``torchrun`` (2 processes, gloo, loopback)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tests.shared_data import CIFAR10, SHARED_DATA

WORKERS = Path(__file__).with_name("workers.py")
CIFAR = CIFAR10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(name: str, *args: str, nproc: int = 2) -> str:
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", str(nproc), "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), str(WORKERS), name, *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKERS.parents[2])}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.fixture(scope="session")
def cifar_test_shard() -> Path:
    path = CIFAR / "test-0000.tar.gz"
    if not path.exists():
        pytest.skip("CIFAR-10 shards not available")
    return path
