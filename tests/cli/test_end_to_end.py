"""The whole story through the ``hddm`` script, as a user runs it: the demo (a subprocess), then assemble and
generate in-process on what it published, and the same lock + seed giving the same images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import hddm_p2p.cli.app  # noqa: F401  (registers the commands)
from hddm_p2p.cli.root import app

runner = CliRunner()
HDDM = Path(sys.executable).with_name("hddm")


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    """``hddm demo --fast`` run as a subprocess of the installed script, with a sentinel HDDM_HOME it must not touch."""
    root = tmp_path_factory.mktemp("e2e")
    out, sentinel = root / "demo", root / "users-home"
    env = {**os.environ, "HDDM_HOME": str(sentinel)}
    proc = subprocess.run([str(HDDM), "demo", "--fast", "--out", str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "time per stage" in proc.stdout and "published manifests" in proc.stdout
    assert "recognisable: " in proc.stdout  # scored by a classifier of the real digits
    assert not sentinel.exists()  # the user's keys, trust and store were never touched
    return out


def _pixels(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted((folder / "samples").glob("*.png"))])


def test_demo_writes_the_story(demo_out):
    out = demo_out
    for name in ("grid.png", "usage.png", "usage.json", "ensemble.lock.json", "generate.json"):
        assert (out / name).is_file(), name
    px = _pixels(out)
    assert px.shape[1:] == (8, 8)  # grey samples at the dataset's resolution
    lock = json.loads((out / "ensemble.lock.json").read_text())
    assert len(lock["members"]) == 4 and lock["router"]["kind"] == "local"
    manifests = [json.loads((out / "home" / "cache" / "blobs" / m["manifest_cid"] / "manifest.json").read_text())
                 for m in lock["members"]]
    assert sorted(m["objective"] for m in manifests) == ["ddpm", "ddpm", "fm", "fm"]
    assert {m["data_space"]["channels"] for m in manifests} == {1}  # the digits are grey end to end
    grid = Image.open(out / "grid.png")
    assert grid.width >= 8 * 8  # upscaled for viewing


def test_generate_again_in_process(demo_out, tmp_path, monkeypatch):
    monkeypatch.setenv("HDDM_HOME", str(demo_out / "home"))
    lock = demo_out / "ensemble.lock.json"
    args = ["generate", "--ensemble", str(lock), "--n", "6", "--steps", "2", "--solver", "euler", "--seed", "3",
            "--no-progress"]
    a = runner.invoke(app, [*args, "--out", str(tmp_path / "a"), "--json"])
    assert a.exit_code == 0, a.output
    summary = json.loads(a.output)
    assert len(summary["experts"]) == 4 and summary["router"].startswith("trained")
    b = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--batch-size", "6", "--mode", "top-k"])
    assert b.exit_code == 0, b.output
    assert (_pixels(tmp_path / "a") == _pixels(tmp_path / "b")).all()  # same lock + seed → same images


def test_assemble_from_the_demo_store(demo_out, tmp_path, monkeypatch):
    monkeypatch.setenv("HDDM_HOME", str(demo_out / "home"))
    cids = [m["manifest_cid"] for m in json.loads((demo_out / "ensemble.lock.json").read_text())["members"]]
    res = runner.invoke(app, ["assemble", *[f"--experts={c}" for c in cids], "--router", "threshold:0.6",
                              "--out", str(tmp_path / "t.lock.json"), "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    router = json.loads(res.output)["router"]
    assert router["kind"] == "threshold" and router["params"]["high"] == [2, 3] and router["params"]["low"] == [0, 1]


def test_subprocess_error_is_one_line(tmp_path):
    proc = subprocess.run([str(HDDM), "generate", "--ensemble", str(tmp_path / "none.json"), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HDDM_HOME": str(tmp_path / "h")})
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "hddm assemble" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("cmd", ["assemble", "generate", "demo"])
def test_help_has_an_example(cmd):
    res = runner.invoke(app, [cmd, "--help"])
    assert res.exit_code == 0 and "Example: hddm " + cmd in res.output
