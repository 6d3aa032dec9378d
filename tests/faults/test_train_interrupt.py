"""Ctrl-C during `hddm train expert` (a real subprocess on real CIFAR-10 shards): exit 130 with one line, a
consistent checkpoint and no publishable half-expert; `--resume` then completes an expert that publishes."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import torch

from hddm_p2p.p2p.publish import publish_dir
from hddm_p2p.p2p.safetensors_check import check_safetensors
from hddm_p2p.p2p.store import LocalStore
from tests.faults.conftest import finish, hddm
from tests.shared_data import CIFAR10, SHARED_DATA

SHARD = CIFAR10 / "train-0000.tar.gz"
BASE = ["train", "expert", "--arch", "tiny", "--batch-size", "8", "--limit", "48", "--device", "cpu",
        "--log-every", "1", "--ckpt-every", "1000", "--data", str(SHARD)]


@pytest.mark.skipif(not SHARD.exists(), reason="CIFAR-10 shards not available")
def test_ctrl_c_during_training_then_resume(hddm_home, publisher, tmp_path):
    out = tmp_path / "expert"
    proc = hddm(*BASE, "--steps", "100000", "--out", str(out))
    deadline = time.monotonic() + 180
    while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)  # at least one step done
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc, timeout=180)
    assert code == 130 and "interrupted" in err and "Traceback" not in err, err
    assert not (out / "expert.json").exists()  # nothing `hddm publish` would accept
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]  # no temp files left
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] >= 1

    from typer.testing import CliRunner

    from hddm_p2p.cli.app import app  # the same command again, in-process (saves a second interpreter start)

    result = CliRunner().invoke(app, [*BASE, "--steps", str(state["step"] + 2), "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    check_safetensors(out / "model.safetensors")
    res = publish_dir(out, LocalStore(), progress=False)
    assert res.manifest.training.steps == state["step"] + 2
