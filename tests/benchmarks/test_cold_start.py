"""The cold-start benchmark runs at toy size on the CPU (no timing asserts): lazy loading reads only routed experts."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cold_start.py"


def test_cold_start_at_toy_size(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--arch", "tiny", "--input-size", "8", "--experts", "4",
                          "--routed", "2", "--steps", "2", "--repeat", "2", "--out", str(tmp_path),
                          "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "cold_start.json").read_text())
    assert result["routed"] == [2, 3] and len(result["rounds"]) == 2
    assert result["routed_bytes"] == 2 * result["bytes_per_expert"] > 0
    assert all(r[k] > 0 for r in result["rounds"] for k in ("read_s", "first_image_s", "warm_sample_s"))
    assert "unrouted experts loaded: 0" in out.stdout
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("hddm-cold-")] == []  # experts removed
