from pathlib import Path

import pytest

from hddm_p2p.train.data import Filter, load_in_memory
from tests.shared_data import CIFAR10, SHARED_DATA

CIFAR = CIFAR10


@pytest.fixture(scope="session")
def cifar_shard() -> Path:
    path = CIFAR / "train-0000.tar.gz"
    if not path.exists():
        pytest.skip("CIFAR-10 shards not available")
    return path


@pytest.fixture(scope="session")
def cifar_small(cifar_shard):
    """The first 64 real CIFAR-10 training images, decoded (uint8, 3×32×32)."""
    return load_in_memory(cifar_shard, 32, Filter(limit=64))
