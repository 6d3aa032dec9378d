"""The attention-width benchmark runs at toy size on CPU (SDPA's math path) and prints one row per width."""

import subprocess
import sys

from tests.benchmarks import BENCHMARKS, run_rows

SCRIPT = BENCHMARKS / "attention_heads.py"


def test_attention_heads_times_real_and_padded_widths(tmp_path):
    _, rows = run_rows("attention_heads.py", tmp_path, "--arch", "tiny", "--batch", "2", "--input-size", "8",
                       "--pad", "64", "--iters", "2", "--device", "cpu")
    assert [r["width"] for r in rows] == [rows[0]["real_width"], 64]
    assert rows[0]["vs_real"] == 1.0 and all(r["seconds"] > 0 and r["tflops"] > 0 for r in rows)


def test_each_arch_needs_its_batch():
    out = subprocess.run([sys.executable, str(SCRIPT), "--arch", "tiny", "--arch", "tiny", "--batch", "2",
                          "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "give one --batch per --arch" in out.stderr and "Traceback" not in out.stderr
