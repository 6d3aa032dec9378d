"""Helpers for fault injection: big real experts, a CLI in a subprocess, and what a loader could see."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hddm_p2p.p2p.keys import KeyStore
from hddm_p2p.p2p.trust import TrustStore
from tests.p2p.conftest import expert_description

MIB = 1 << 20


def big_expert_dir(path: Path, mib: int, name: str = "big-expert", seed: int = 0) -> Path:
    """An expert directory whose model.safetensors holds ``mib`` MiB of random float32 weights."""
    path.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    save_file({"w": torch.randn(mib * MIB // 4, generator=g)}, str(path / "model.safetensors"),
              metadata={"hddm.format": "hddm-expert/1"})
    (path / "expert.json").write_text(json.dumps(expert_description(name)))
    return path


def visible_files(root: Path) -> list[Path]:
    """Files a loader could pick up under a cache root: verified blobs only."""
    blobs = root / "blobs"
    return sorted(p for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else []


def hddm(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    """Start the real ``hddm`` CLI in a subprocess (stdout/stderr captured as text)."""
    return subprocess.Popen([sys.executable, "-m", "hddm_p2p.cli.app", *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.fixture
def publisher(hddm_home: Path):
    """A key ``alice`` in the user's home, also trusted."""
    info = KeyStore().generate("alice")
    TrustStore().add(info.did, "alice")
    return info
