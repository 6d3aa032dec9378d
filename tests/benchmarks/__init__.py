"""The benchmark scripts, run at toy size on the CPU (numbers printed, no timing asserted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_rows(script: str, tmp_path: Path, *args: str, timeout: int = 300) -> tuple[subprocess.CompletedProcess, list]:
    """Run ``benchmarks/<script>`` with ``args`` on one CPU thread, its JSON rows written under ``tmp_path``; assert it
    exited 0. Returns the finished process (its stdout is the printed table) and the rows."""
    log = tmp_path / "rows.jsonl"
    out = subprocess.run([sys.executable, str(BENCHMARKS / script), *args, "--json", str(log)],
                         capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    return out, [json.loads(line) for line in log.read_text().splitlines()]
