"""The keys/trust/publish/inspect/fetch/catalog commands driven as a user drives them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hddm_p2p.cli.app  # noqa: F401  (registers the commands)
from hddm_p2p.cli.root import app
from hddm_p2p.p2p.signing import parse_json
from tests.p2p.conftest import make_expert_dir

runner = CliRunner()


def hddm(*args: str, code: int = 0, input: str | None = None):
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture
def user(hddm_home):
    hddm("keys", "generate", "--name", "alice")
    return hddm_home


def test_keys_and_trust_commands(user, tmp_path):
    keys = json.loads(hddm("keys", "list", "--json").stdout)
    did = keys[0]["did"]
    assert keys[0]["name"] == "alice" and keys[0]["ipns"].startswith("k51")
    assert hddm("keys", "export", "alice").stdout.strip() == did
    assert [t["did"] for t in json.loads(hddm("trust", "list", "--json").stdout)] == [did]  # generate trusts it
    pem = tmp_path / "alice.pem"
    hddm("keys", "export", "alice", "--private", "--out", str(pem))
    assert oct(pem.stat().st_mode & 0o777) == "0o600"
    assert "already exists" in _error_line(hddm("keys", "import", str(pem), "--name", "alice", code=1))
    assert did in hddm("keys", "import", str(pem), "--name", "alice2").stdout
    hddm("trust", "remove", "alice")
    assert json.loads(hddm("trust", "list", "--json").stdout) == []
    hddm("trust", "add", str(pem), "--name", "from-pem")
    assert json.loads(hddm("trust", "list", "--json").stdout)[0]["did"] == did
    assert "not in the trust store" in _error_line(hddm("trust", "remove", "nobody", code=1))
    assert "--out" in _error_line(hddm("keys", "export", "alice", "--private", code=1))


def test_passphrase_prompt(hddm_home, monkeypatch):
    monkeypatch.delenv("HDDM_KEY_PASSPHRASE", raising=False)
    out = hddm("keys", "generate", "--name", "locked", "--passphrase", input="s3cret\ns3cret\n").stdout
    assert "did:key:z6Mk" in out and "🔑" not in out  # rich must not read ":key:" as an emoji code
    assert json.loads(hddm("keys", "list", "--json").stdout)[0]["encrypted"] is True
    out = hddm("keys", "export", "locked", "--private", "--out", str(hddm_home / "x.pem"), code=1)
    assert "passphrase-protected" in _error_line(out)
    hddm("keys", "export", "locked", "--private", "--out", str(hddm_home / "x.pem"), "--passphrase", input="s3cret\n")


def test_publish_inspect_fetch_catalog(user, tmp_path):
    d = make_expert_dir(tmp_path / "exp")
    pub = json.loads(hddm("publish", str(d), "--json", "--no-progress", "--catalog", "main").stdout)
    cid = pub["cid"]
    assert {a["name"] for a in pub["artifacts"]} == {"model.safetensors", "README.md"} and pub["card_cid"]
    shown = json.loads(hddm("inspect", cid, "--json").stdout)
    assert shown["verified"] and shown["trust"].startswith("accepted") and shown["manifest"]["name"] == "cifar-fm-c0"
    assert "signature valid" in hddm("inspect", cid).stdout
    fetched = json.loads(hddm("fetch", cid, "--json", "--no-progress").stdout)
    weights = Path(fetched["paths"]["model.safetensors"])
    assert weights.read_bytes() == (d / "model.safetensors").read_bytes()
    inspected_file = json.loads(hddm("inspect", fetched["paths"]["manifest.json"], "--json").stdout)
    assert inspected_file["cid"] == cid
    ipns = pub["catalog"]["ipns"]
    cat = json.loads(hddm("catalog", "show", ipns, "--json").stdout)
    assert [e["cid"] for e in cat["catalog"]["entries"]] == [cid]
    pub2 = json.loads(hddm("publish", str(d), "--json", "--no-progress").stdout)
    assert pub2["version"] == 2
    out = json.loads(hddm("catalog", "publish", "main", "--expert", pub2["cid"], "--revoke", cid, "--json").stdout)
    assert out["version"] == 2 and out["entries"] == [pub2["cid"]]
    shown = hddm("catalog", "show", ipns).stdout
    assert "catalog main v2" in shown and "did:key:z6Mk" in shown and "revoked" in shown


def test_cli_bad_input_is_one_line(user, tmp_path):
    d = make_expert_dir(tmp_path / "exp")
    cid = json.loads(hddm("publish", str(d), "--json", "--no-progress").stdout)["cid"]
    store_blob = user / "store" / "blobs" / cid
    doc = parse_json(store_blob.read_bytes())
    doc["time_scale"] = 3.0
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(doc))
    assert "changed after signing" in _error_line(hddm("inspect", str(bad), code=1))
    doc["schema"] = "hddm.expert/9"
    bad.write_text(json.dumps(doc))
    assert "unknown manifest schema 'hddm.expert/9'" in _error_line(hddm("inspect", str(bad), code=1))
    assert "not a valid CID" in _error_line(hddm("fetch", "not-a-cid", code=1))
    hddm("trust", "remove", "alice")
    assert "hddm trust add" in _error_line(hddm("fetch", cid, "--no-progress", code=1))
    hddm("fetch", cid, "--no-progress", "--allow-untrusted")
    (d / "model.safetensors").write_bytes(b"\x80\x04\x95" + b"\0" * 64)  # a pickle header
    assert "safetensors" in _error_line(hddm("publish", str(d), code=1))
    assert "unknown store" in _error_line(hddm("fetch", cid, "--store", "ftp", code=1))
    assert "use --store ipfs" in _error_line(hddm("announce", cid, "--store", "local", code=1))
    assert "use --store ipfs" in _error_line(hddm("listen", "--store", "local", "--count", "1", code=1))


def test_inspect_signed_examples_and_lock(hddm_home):
    examples = Path(__file__).resolve().parents[2] / "manifests" / "examples"
    catalog = json.loads(hddm("inspect", str(examples / "catalog.json"), "--json").stdout)
    expert = json.loads(hddm("inspect", str(examples / "expert.json"), "--json").stdout)
    assert expert["cid"] == catalog["manifest"]["entries"][0]["cid"]  # CID of the canonical bytes
    assert expert["trust"].startswith("REFUSED") and "not in your trust store" in expert["trust"]
    lock = hddm("inspect", str(examples / "lock.json")).stdout
    assert "hddm.lock/1" in lock and "unsigned lock file" in lock and "cifar-fm-c0" in lock


def test_console_script_subprocess(user, tmp_path):
    """The installed `hddm` console script, as a user runs it: a refused fetch is one line and exit code 1."""
    exe = Path(sys.executable).parent / "hddm"
    d = make_expert_dir(tmp_path / "exp")
    cid = json.loads(hddm("publish", str(d), "--json", "--no-progress").stdout)["cid"]
    hddm("trust", "remove", "alice")
    env = {**os.environ, "HDDM_HOME": str(user)}
    bad = subprocess.run([str(exe), "fetch", cid, "--no-progress"], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr + bad.stdout
    assert bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
    assert "not in your trust store" in bad.stderr and not (user / "cache" / "blobs").exists()
