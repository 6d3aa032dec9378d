"""``hddm data encode`` under real torchrun (2 processes, gloo, CPU, tiny random VAE): rank r encodes and
writes shards i ≡ r (mod 2), rank 0 the index; the directory equals the one-process run's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hddm_p2p.train.encode import read_latent_shards
from tests.distributed.conftest import _free_port

HDDM = Path(sys.executable).with_name("hddm")
TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.slow
# 40 images, 16 per shard → shards 0 (rank 0), 1 (rank 1), 2 (rank 0, 8 images); batches of 6 cross shards
ARGS = ["--vae", "tiny-random", "--image-resolution", "32", "--limit", "40", "--batch-size", "6", "--shard-size", "16",
        "--device", "cpu"]


def _encode(shard: Path, out: Path, nproc: int) -> str:
    args = ["data", "encode", "--data", str(shard), "--out", str(out), *ARGS]
    cmd = [str(HDDM), *args] if nproc == 1 else [
        str(TORCHRUN), "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1", "--master_port",
        str(_free_port()), str(HDDM), *args]
    done = subprocess.run(cmd, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_two_rank_encoding_merges_to_the_one_process_result(cifar_test_shard, tmp_path):
    from hddm_p2p.train.encode import encode_dataset

    one, two = tmp_path / "one", tmp_path / "two"
    encode_dataset(str(cifar_test_shard), one, "tiny-random", 32, 6, 16, "cpu",
                   __import__("hddm_p2p.train.data", fromlist=["Filter"]).Filter(limit=40))
    out = _encode(cifar_test_shard, two, 2)
    assert out.count("latents written to") == 1  # rank 0 alone reports
    ia, ib = json.loads((one / "latents.json").read_text()), json.loads((two / "latents.json").read_text())
    assert ia == ib and len(ib["shards"]) == 3 and ib["count"] == 40
    a, b = read_latent_shards(one), read_latent_shards(two)
    assert a.keys == b.keys and torch.equal(a.labels, b.labels) and a.captions == b.captions
    torch.testing.assert_close(a.x.float(), b.x.float(), rtol=0, atol=2e-3)  # float16, batch-order rounding
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())  # no stray temp files
