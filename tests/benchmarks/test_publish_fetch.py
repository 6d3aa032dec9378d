"""The publish/fetch benchmark runs at toy size against a real Kubo node (no timing asserts)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "publish_fetch.py"


@pytest.mark.kubo
def test_publish_fetch_benchmark_at_toy_size(tmp_path):
    from hddm_p2p.paths import kubo_bin

    if not kubo_bin().is_file():
        pytest.fail(f"Kubo binary not found at {kubo_bin()}: run `make kubo`", pytrace=False)
    out = subprocess.run([sys.executable, str(SCRIPT), "--size-mib", "3", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "publish_fetch.json").read_text())
    tools = [r["tool"] for r in result["rows"]]
    assert tools == ["hddm hash_file", "ipfs add --only-hash", "KuboStore.add_file", "ipfs add",
                     "KuboStore.download", "ipfs cat"]
    assert len({r["cid"] for r in result["rows"]}) == 1 and result["rows"][0]["cid"].startswith("bafy")
    assert all(r["seconds"] > 0 for r in result["rows"])
    assert (tmp_path / "publish_fetch.png").stat().st_size > 1000
    assert not (tmp_path / "work").exists()
