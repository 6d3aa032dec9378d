from pathlib import Path

import pytest
from tests.shared_data import CIFAR10, SHARED_DATA

CIFAR = CIFAR10


@pytest.fixture(scope="session")
def cifar_test_shard() -> Path:
    path = CIFAR / "test-0000.tar.gz"
    if not path.exists():
        pytest.skip("CIFAR-10 shards not available")
    return path


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Small models and k-means: on a shared CPU extra threads only contend."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
