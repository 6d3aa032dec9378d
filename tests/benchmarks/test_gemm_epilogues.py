"""The GEMM epilogue benchmark runs at toy size on CPU (the ops' PyTorch fallbacks) and prints every row."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gemm_epilogues.py"


def test_gemm_epilogues_prints_each_block_matmul(tmp_path):
    log = tmp_path / "rows.jsonl"
    out = subprocess.run([sys.executable, str(SCRIPT), "--arch", "tiny", "--batch", "2", "--input-size", "8",
                          "--iters", "2", "--device", "cpu", "--json", str(log)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["gemm"] for r in rows] == ["qkv", "proj", "fc1+gelu", "fc1 plain", "fc2", "train fc1+gelu+aux",
                                         "train dgelu, sum", "train dgelu+bgrad"]
    assert all(r["pytorch_ms"] > 0 and r["lt_tuned_ms"] > 0 and r["tokens"] == rows[0]["tokens"] > 0 for r in rows)
    assert "cuBLASLt found: False" in out.stdout
    assert all(r["sm90_ms"] is None and r["sm90_rel_err"] is None for r in rows)  # no Hopper GPU: no CUTLASS column
