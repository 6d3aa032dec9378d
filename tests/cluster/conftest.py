from pathlib import Path

import pytest

CIFAR = Path("/work/shared/data/cifar10")


@pytest.fixture(scope="session")
def cifar_test_shard() -> Path:
    path = CIFAR / "test-0000.tar.gz"
    if not path.exists():
        pytest.skip("CIFAR-10 shards not available")
    return path
