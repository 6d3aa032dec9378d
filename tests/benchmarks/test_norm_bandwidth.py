"""The norm-kernel bandwidth benchmark runs at toy size on CPU (the plain PyTorch path) and prints its rows."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "norm_bandwidth.py"


def test_norm_bandwidth_prints_a_row_per_arch(tmp_path):
    log = tmp_path / "rows.jsonl"
    out = subprocess.run([sys.executable, str(SCRIPT), "--arch", "tiny", "--batch", "2", "--arch", "DiT-S/2",
                          "--batch", "1", "--input-size", "8", "--iters", "2", "--inner", "2", "--device", "cpu", "--json", str(log)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["arch"] for r in rows] == ["tiny", "DiT-S/2"]
    assert all(r["kernel_tbs"] > 0 and r["norm_tbs"] > 0 and r["add_tbs"] > 0 and r["config"] is None for r in rows)
