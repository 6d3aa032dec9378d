"""``hddm cid`` driven as a user drives it; its output equals ``ipfs add --only-hash``."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

import hddm_p2p.cli.cid  # noqa: F401  (registers the command)
from hddm_p2p.cli.root import app
from tests.p2p.test_cid import MiB, pattern

runner = CliRunner()


@pytest.mark.kubo
def test_cid_matches_kubo(kubo_node, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(pattern(2 * MiB + 1))
    result = runner.invoke(app, ["cid", str(path)])
    assert result.exit_code == 0
    assert result.stdout.strip() == kubo_node.ipfs("add", "--only-hash", "--quieter", str(path)).strip()


def test_cid_json(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    result = runner.invoke(app, ["cid", str(path), "--json"])
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert out == {"cid": "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq",
                   "sha256": hashlib.sha256(b"hello").hexdigest(), "size": 5}


def test_missing_file_is_one_line_error(tmp_path):
    result = runner.invoke(app, ["cid", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "is not a file" in result.output and "Traceback" not in result.output
