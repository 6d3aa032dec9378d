"""Bad input to generate: each a one-line error through the CLI, exit 1, no traceback, no output folder."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

import hddm_p2p.cli.app  # noqa: F401  (registers the commands)
from hddm_p2p.cli.root import app

runner = CliRunner()


def _fails(args: list[str], match: str, out) -> str:
    res = runner.invoke(app, args)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert match in " ".join(lines), res.output
    assert not out.exists() and not list(out.parent.glob(out.name + ".partial-*"))
    return lines[0]


def _gen_args(lock, out, *extra):
    return ["generate", "--ensemble", str(lock), "--out", str(out), "--n", "2", "--steps", "2", "--no-progress", *extra]


@pytest.fixture
def own_lock(world, home, tmp_path):
    """A lock whose cached files this test may break: its own copy of the cache."""
    from hddm_p2p.pipeline.assemble import AssembleConfig, assemble

    lock = assemble(AssembleConfig(out=tmp_path / "x.lock.json", experts=tuple(world.cids), router="uniform",
                                   progress=False)).path
    shutil.copytree(home / "cache", tmp_path / "cache")
    return lock


def _cached(home, lock, i, name):
    m = json.loads(lock.read_text())["members"][i]
    a = next(a for a in m["artifacts"] if a["name"] == name)
    return home / "cache" / "blobs" / a["cid"] / name


@pytest.fixture
def restore_cache(home, tmp_path):
    shutil.copytree(home / "cache", tmp_path / "cache-backup")
    yield
    shutil.rmtree(home / "cache")
    shutil.copytree(tmp_path / "cache-backup", home / "cache")


def test_changed_artifact(own_lock, home, tmp_path, restore_cache):
    w = _cached(home, own_lock, 1, "model.safetensors")
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    _fails(_gen_args(own_lock, tmp_path / "o"), "model.safetensors of expert 't-fm' changed", tmp_path / "o")


def test_missing_artifact(own_lock, home, tmp_path, restore_cache):
    _cached(home, own_lock, 0, "model.safetensors").unlink()
    line = _fails(_gen_args(own_lock, tmp_path / "o"), "is missing", tmp_path / "o")
    assert "hddm fetch" in line


def test_unknown_objective(world, home, tmp_path, restore_cache):
    """A signed manifest declaring an objective this hddm does not know is refused at load."""
    from hddm_p2p.p2p.cid import cid_of_bytes
    from hddm_p2p.p2p.keys import KeyStore
    from hddm_p2p.p2p.manifests import manifest_bytes
    from hddm_p2p.p2p.signing import canonical_json, parse_json, sign_document
    from hddm_p2p.pipeline.assemble import AssembleConfig, assemble

    lock = assemble(AssembleConfig(out=tmp_path / "x.lock.json", experts=tuple(world.cids[:2]), router="uniform",
                                   progress=False)).path
    doc = json.loads(lock.read_text())
    old = doc["members"][0]["manifest_cid"]
    m = parse_json((home / "cache" / "blobs" / old / "manifest.json").read_bytes())
    m.pop("signature")
    m["objective"] = "edm"
    data = canonical_json(sign_document(m, KeyStore().load("tester")))
    cid = cid_of_bytes(data)
    (home / "cache" / "blobs" / cid).mkdir(parents=True)
    (home / "cache" / "blobs" / cid / "manifest.json").write_bytes(data)
    doc["members"][0]["manifest_cid"] = cid
    lock.write_text(json.dumps(doc))
    assert manifest_bytes  # imported for symmetry with publish
    _fails(_gen_args(lock, tmp_path / "o"), "objective", tmp_path / "o")


def test_prompt_for_unconditional(threshold_lock, tmp_path):
    _fails(_gen_args(threshold_lock, tmp_path / "o", "--prompt", "a seven"), "unconditional", tmp_path / "o")


def test_class_for_unconditional(threshold_lock, tmp_path):
    _fails(_gen_args(threshold_lock, tmp_path / "o", "--class", "3"), "unconditional", tmp_path / "o")


def test_k_above_experts(threshold_lock, tmp_path):
    _fails(_gen_args(threshold_lock, tmp_path / "o", "--mode", "top-k", "--k", "5"), "--k 5 is more than the 3",
           tmp_path / "o")


def test_missing_lock(home, tmp_path):
    _fails(_gen_args(tmp_path / "nope.lock.json", tmp_path / "o"), "does not exist", tmp_path / "o")


def test_output_exists(threshold_lock, tmp_path):
    (tmp_path / "o").mkdir()
    res = runner.invoke(app, _gen_args(threshold_lock, tmp_path / "o"))
    assert res.exit_code == 1 and "already exists" in res.output and "--force" in res.output


@pytest.mark.parametrize("flag, value, match", [("--solver", "rk4", "unknown --solver"),
                                                ("--mode", "top-3", "unknown routing mode"),
                                                ("--dtype", "fp8", "unknown --dtype")])
def test_bad_flags(threshold_lock, tmp_path, flag, value, match):
    _fails(_gen_args(threshold_lock, tmp_path / "o", flag, value), match, tmp_path / "o")


def test_incompatible_experts_cli(world, home, tmp_path):
    from hddm_p2p.p2p.publish import publish_dir
    from hddm_p2p.p2p.store import LocalStore
    from tests.pipeline.conftest import train_tiny

    d = train_tiny(world.digits, tmp_path / "t-big", "fm", "flow-linear", None, None, steps=1, resolution=16)
    cid = publish_dir(d, LocalStore(), key_name="tester", progress=False).cid
    line = _fails(["assemble", "--experts", world.cids[1], "--experts", cid, "--out", str(tmp_path / "l.json")],
                  "data_space.resolution is 16, expected 8", tmp_path / "l.json")
    assert "t-big" in line
