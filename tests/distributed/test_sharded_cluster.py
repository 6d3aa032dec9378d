"""``hddm data cluster`` under real torchrun (2 processes, gloo, CPU): the ranks share the feature
extraction, rank 0 clusters; assignments and centroids equal the one-process run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.distributed.conftest import _free_port

HDDM = Path(sys.executable).with_name("hddm")
TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.slow


def _cluster(shard: Path, out: Path, nproc: int) -> str:
    args = ["data", "cluster", "--data", str(shard), "--k", "4", "--features", "pixels", "--limit", "200",
            "--shard-size", "64", "--out", str(out), "--json"]
    cmd = [str(HDDM), *args] if nproc == 1 else [
        str(TORCHRUN), "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1", "--master_port",
        str(_free_port()), str(HDDM), *args]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_two_rank_clustering_equals_one_process(cifar_test_shard, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    s1 = json.loads(_cluster(cifar_test_shard, one, 1))
    lines = [ln for ln in _cluster(cifar_test_shard, two, 2).splitlines() if ln.startswith("{")]
    assert len(lines) == 1  # rank 0 alone prints the summary
    s2 = json.loads(lines[0])
    assert s1["count"] == s2["count"] == 200 and s1["sizes"] == s2["sizes"]
    assert json.loads((one / "assignments.json").read_text()) == json.loads((two / "assignments.json").read_text())
    assert s1["assignments_sha256"] == s2["assignments_sha256"]
    c1, c2 = load_file(one / "centroids.safetensors"), load_file(two / "centroids.safetensors")
    assert (c1["centroids"] - c2["centroids"]).abs().max() < 1e-5
    idx = json.loads((two / "features" / "index.json").read_text())
    assert len(idx["shards"]) == 4  # 64 + 64 + 64 + 8: ranks 0 and 1 wrote two each
