"""Shared fixtures: an isolated ``HDDM_HOME`` and real loopback-only Kubo daemons."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture
def hddm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``HDDM_HOME`` pointed at a fresh temporary directory for the duration of one test."""
    home = tmp_path / "hddm-home"
    home.mkdir()
    monkeypatch.setenv("HDDM_HOME", str(home))
    return home
