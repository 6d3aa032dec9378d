"""Fixtures for the evaluation tests: real CIFAR-10 shards, no network, one quickly trained classifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hddm_p2p.cli.app import app
from tests.shared_data import CIFAR10, SHARED_DATA

CIFAR_ROOT = SHARED_DATA


@pytest.fixture(autouse=True)
def _offline_with_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Never download weights (loopback only); an empty torch hub cache; dataset aliases resolve to the shards."""
    monkeypatch.setenv("HDDM_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HDDM_DATA", str(CIFAR_ROOT))


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch and one BLAS thread: on 2 shared cores, threads spinning at barriers make convs 5-8× slower."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cifar() -> Path:
    if not (CIFAR_ROOT / "cifar10" / "test-0000.tar.gz").exists():
        pytest.skip("CIFAR-10 shards not available")
    return CIFAR_ROOT / "cifar10"


@pytest.fixture(scope="session")
def quick_classifier(cifar: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, float]:
    """`hddm eval classifier train --recipe cifar10-resnet-quick` on real shards: (dir, classifier.json, wall s)."""
    import time

    import torch

    out = tmp_path_factory.mktemp("clf") / "clf"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on 2 shared cores, two spinning OpenMP threads cost ~8× the CPU time of one
    t0 = time.time()
    try:
        r = CliRunner().invoke(app, ["eval", "classifier", "train", "--recipe", "cifar10-resnet-quick", "--train",
                                     str(cifar / "train-0000.tar.gz"), "--test", str(cifar / "test-0000.tar.gz"),
                                     "--out", str(out), "--json"])
    finally:
        torch.set_num_threads(threads)
    assert r.exit_code == 0, r.output
    return out, json.loads((out / "classifier.json").read_text()), time.time() - t0
