"""Fixtures for attack simulations: a user home, the simulator, and helpers that say nothing was accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.security.simulator import RepositorySimulator


@pytest.fixture
def sim(hddm_home: Path, tmp_path: Path) -> RepositorySimulator:
    return RepositorySimulator(tmp_path / "sim")


def cached_files(home: Path) -> list[Path]:
    """Every file a loader could pick up (verified blobs); partial downloads are not loadable."""
    root = home / "cache" / "blobs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def trust_state(home: Path) -> str:
    path = home / "trust.json"
    return path.read_text() if path.exists() else ""
