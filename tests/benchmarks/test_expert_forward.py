"""The expert forward benchmark runs at toy size on CPU, diffusers included, and prints numbers."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "expert_forward.py"


def test_expert_forward_prints_throughput_and_ratio_to_diffusers(tmp_path):
    log = tmp_path / "rows.jsonl"
    out = subprocess.run([sys.executable, str(SCRIPT), "--arch", "tiny", "--batch", "2", "--classes", "10",
                          "--variants", "diffusers eager,hddm eager", "--warmup", "1", "--iters", "2",
                          "--device", "cpu", "--json", str(log)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["variant"] for r in rows] == ["diffusers eager", "hddm eager"]
    assert all(r["images_per_s"] > 0 and r["flops_per_image"] > 0 and r["s_per_call_queued"] > 0 for r in rows)
    table = [ln for ln in out.stdout.splitlines() if ln.startswith("tiny ")]
    assert len(table) == 2 and all("n/a" in ln for ln in table)  # no MFU / no compiled diffusers row on CPU
