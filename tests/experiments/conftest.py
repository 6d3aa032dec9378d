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


def toy_config(path: Path, **changes) -> Path:
    """The kept toy config, pointed at wherever the shards are here, with top-level sections updated
    (dicts merged, anything else replaced), written to ``path``."""
    import yaml

    d = yaml.safe_load((REPO / "experiments" / "cifar10_toy.yaml").read_text().replace("/work/shared/data/cifar10",
                                                                                         str(CIFAR)))
    for key, value in changes.items():
        d[key] = {**d[key], **value} if isinstance(value, dict) and isinstance(d.get(key), dict) else value
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path
