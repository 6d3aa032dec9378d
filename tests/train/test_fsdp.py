"""``hddm train expert --fsdp`` under real ``torchrun`` (2 processes, gloo, CPU, FSDP2): checkpoints are full
state dicts, so a run can pass from one process to FSDP and back and train what one process trains."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hddm_p2p.train.loop import CHECKPOINT

HDDM = Path(sys.executable).with_name("hddm")
TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.slow


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(shard: Path, out: Path, steps: int, nproc: int = 1, *extra: str) -> str:
    args = ["train", "expert", "--data", str(shard), "--limit", "64", "--arch", "tiny", "--steps", str(steps),
            "--batch-size", "8", "--lr", "1e-3", "--warmup", "2", "--ckpt-every", "2", "--log-every", "1",
            "--device", "cpu", "--out", str(out), *extra]
    cmd = [str(HDDM), *args] if nproc == 1 else [str(TORCHRUN), "--nproc_per_node", str(nproc), "--master_addr",
                                                 "127.0.0.1", "--master_port", str(_port()), str(HDDM), *args]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_fsdp_checkpoints_interchange_with_one_process(cifar_shard, tmp_path):
    one, mixed = tmp_path / "one", tmp_path / "mixed"
    _train(cifar_shard, one, 6)
    _train(cifar_shard, mixed, 2)  # one process to step 2 …
    out = _train(cifar_shard, mixed, 4, 2, "--fsdp", "--resume")  # … FSDP over 2 ranks from its checkpoint to 4 …
    assert out.count("expert written") == 1
    ck = torch.load(mixed / CHECKPOINT, weights_only=True)  # … saved whole by rank 0, as one device saves it
    assert ck["step"] == 4 and ck["config"]["fsdp"] is True
    ref = torch.load(one / CHECKPOINT, weights_only=True)["optimizer"]
    assert sorted(ck["optimizer"]["state"]) == sorted(ref["state"])  # keyed by parameter index, not by name
    assert ck["optimizer"]["param_groups"][0]["params"] == ref["param_groups"][0]["params"]
    assert all(type(v) is torch.Tensor for v in ck["model"].values())  # full tensors, not DTensor shards
    _train(cifar_shard, mixed, 6, 1, "--resume")  # … and one process again to step 6
    a, b = torch.load(one / CHECKPOINT, weights_only=True), torch.load(mixed / CHECKPOINT, weights_only=True)
    assert _max_diff(a["model"], b["model"]) < 1e-5 and _max_diff(a["ema"], b["ema"]) < 1e-5
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert max((sa[i]["exp_avg_sq"] - sb[i]["exp_avg_sq"]).abs().max().item() for i in sa) < 1e-7
    assert _max_diff(load_file(one / "model.safetensors"), load_file(mixed / "model.safetensors")) < 1e-5
    assert a["data"] == b["data"] and torch.equal(a["generator"], b["generator"])
