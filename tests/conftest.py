"""Shared fixtures: an isolated ``HDDM_HOME`` and real loopback-only Kubo daemons."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

if TYPE_CHECKING:
    from hddm_p2p.p2p.kubo_node import KuboNode


@pytest.fixture
def hddm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``HDDM_HOME`` pointed at a fresh temporary directory for the duration of one test."""
    home = tmp_path / "hddm-home"
    home.mkdir()
    monkeypatch.setenv("HDDM_HOME", str(home))
    return home


def _kubo_binary() -> Path:
    """The Kubo binary, or fail (never skip): CI builds it, and locally `make kubo` does."""
    from hddm_p2p.paths import kubo_bin

    binary = kubo_bin()
    if not binary.is_file():
        pytest.fail(f"Kubo binary not found at {binary} ($HDDM_KUBO_BIN): run `make kubo` to build it", pytrace=False)
    return binary


@pytest.fixture
def kubo_node() -> Iterator[KuboNode]:
    """One running loopback-only Kubo daemon in a temporary repo."""
    from hddm_p2p.p2p.kubo_node import KuboNode

    with KuboNode(_kubo_binary(), name="a") as node:
        yield node


@pytest.fixture
def kubo_pair() -> Iterator[tuple[KuboNode, KuboNode]]:
    """Two loopback-only Kubo daemons, connected to each other with swarm connect."""
    from hddm_p2p.p2p.kubo_node import KuboNode

    binary = _kubo_binary()
    with KuboNode(binary, name="a") as a, KuboNode(binary, name="b") as b:
        a.connect(b)
        yield a, b
