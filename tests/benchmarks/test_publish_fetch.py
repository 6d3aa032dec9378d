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
    out = subprocess.run([sys.executable, str(SCRIPT), "--size-mib", "3", "--repeat", "2", "--out", str(tmp_path),
                          "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "publish_fetch.json").read_text())
    tools = ["hddm hash_file", "ipfs add --only-hash", "KuboStore.add_file", "ipfs add", "KuboStore.download", "ipfs cat"]
    assert [r["tool"] for r in result["summary"]] == tools
    assert sorted(r["tool"] for r in result["rows"]) == sorted(tools * 2)  # every tool once per round
    assert [r["tool"] for r in result["rows"] if r["round"] == 1][:2] == tools[:2][::-1]  # order alternates
    assert len({r["cid"] for r in result["rows"]}) == 1 and result["rows"][0]["cid"].startswith("bafy")
    assert all(r["seconds"] > 0 for r in result["rows"])
    assert all(len(r["round_ratios"]) == 2 for r in result["summary"] if not r["tool"].startswith("ipfs"))
    assert (tmp_path / "publish_fetch.png").stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("hddm-bench-")] == []  # scratch removed
