"""The register benchmark compiles the Triton attention kernels for sm_90 on this CPU-only machine and reads each
binary's registers, stack and shared memory."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "kernel_registers.py"


def test_kernel_registers_reads_each_compiled_kernel(tmp_path):
    pytest.importorskip("triton")
    log = tmp_path / "rows.jsonl"
    out = subprocess.run([sys.executable, str(SCRIPT), "--arch", "DiT-S/2", "--kernels", "forward,head,blocks",
                          "--configs", "1", "--json", str(log)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["kernel"] for r in rows] == ["forward", "head", "blocks"]
    assert all(r["tokens"] == 256 and r["d"] == 64 and r["sm"] == 90 for r in rows)
    assert all(0 < r["regs"] <= 255 and r["stack"] >= 0 and r["shared"] > 0 for r in rows)


def test_unknown_kernel_is_one_line():
    out = subprocess.run([sys.executable, str(SCRIPT), "--kernels", "nope"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "unknown kernel 'nope'" in out.stderr and "Traceback" not in out.stderr
