"""Fixtures for the experiment tests: real CIFAR-10 shards and one intra-op thread."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.shared_data import CIFAR10, SHARED_DATA

CIFAR = CIFAR10
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on 2 shared cores, spinning OpenMP threads make convolutions ~10× slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cifar() -> Path:
    if not (CIFAR / "train-0000.tar.gz").exists():
        pytest.fail(f"CIFAR-10 shards missing under {CIFAR} (the experiment tests need real data)")
    return CIFAR


@pytest.fixture()
def toy_config_text(cifar) -> str:
    return (REPO / "experiments" / "cifar10_toy.yaml").read_text().replace("/work/shared/data/cifar10", str(CIFAR))
