"""The throughput benchmark runs at toy size on CPU and prints numbers (no timing asserts)."""

import re
import subprocess
import sys

from tests.benchmarks import BENCHMARKS, run_rows

SCRIPT = BENCHMARKS / "train_throughput.py"


def test_train_throughput_prints_images_per_second():
    out = subprocess.run([sys.executable, str(SCRIPT), "--arch", "tiny", "--batch", "2", "--steps", "2", "--warmup",
                          "1", "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [ln for ln in out.stdout.splitlines() if ln.startswith("tiny")]
    assert len(rows) == 2 and "fp32 eager" in rows[0] and "bf16 eager" in rows[1]
    for row in rows:
        nums = [float(x) for x in re.findall(r"\d+\.\d+", row)]
        assert len(nums) >= 4 and nums[0] > 0 and nums[1] > 0  # s/step, img/s, then TFLOP/s, speedup
    assert "n/a" in rows[0]  # no MFU without a known GPU peak


def test_train_throughput_ladder_prints_one_row_per_step(tmp_path):
    out, rows = run_rows("train_throughput.py", tmp_path, "--arch", "tiny", "--batch", "2", "--steps", "2",
                         "--warmup", "1", "--device", "cpu", "--variants", "fp32 eager,bf16 eager,+fused adamw")
    assert [r["mode"] for r in rows] == ["fp32 eager", "bf16 eager", "+fused adamw"]
    assert all(r["images_per_s"] > 0 and r["train_flops"] > 0 for r in rows)
    bad = subprocess.run([sys.executable, str(SCRIPT), "--arch", "tiny", "--device", "cpu", "--variants", "fast"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "unknown variant 'fast'" in bad.stderr and "Traceback" not in bad.stderr


def test_train_throughput_data_clip_and_graph_rows(tmp_path):
    """The data rows draw every step's batch from the training loop's ``MemorySource``; on the CPU the GPU-resident
    row reports why it cannot run instead of failing the script; the clip row steps the fused AdamW with the
    clipping factor (CPU fused AdamW); the CUDA-graph row compiles with ``mode="reduce-overhead"`` (no graphs on
    the CPU) and marks each step's start."""
    rows = "+data from host memory,+data on the GPU,+clip in the step,+cuda graphs"
    _, (host, resident, clip, graphs) = run_rows("train_throughput.py", tmp_path, "--arch", "tiny", "--batch", "2",
                                                 "--steps", "2", "--warmup", "1", "--device", "cpu",
                                                 "--variants", rows, timeout=600)
    assert host["mode"] == "+data from host memory" and host["images_per_s"] > 0
    assert "stay in host memory" in resident["error"]
    assert clip["mode"] == "+clip in the step" and clip["images_per_s"] > 0
    assert graphs["mode"] == "+cuda graphs" and graphs["images_per_s"] > 0


def test_train_throughput_norm_sums_and_weight_grad_rows(tmp_path):
    """The rows with the norm passes' sums added by our kernel (on the CPU as the rows they build on, since the
    fused norm kernels take CUDA tensors) and the fp32 weight gradients run, and say which switches they set."""
    sys.path.insert(0, str(SCRIPT.parent))
    import train_throughput

    rows = ["+norm sums kernel", "+bias grads and norm sums kernel", "+norm sums kernel and fp32 weight grads"]
    assert all(train_throughput.LADDER[name].sums_kernel for name in rows)
    assert train_throughput.LADDER[rows[-1]].fp32_weight_grads
    together = train_throughput.LADDER["+sums kernel and fp32 grads and combo kernels"]
    assert together.sums_kernel and together.fp32_weight_grads and ("combo_kernels", True) in together.inductor
    assert not any("," in name for name in train_throughput.LADDER)  # --variants and $LADDER split on commas
    _, got = run_rows("train_throughput.py", tmp_path, "--arch", "tiny", "--batch", "2", "--steps", "1",
                      "--warmup", "1", "--device", "cpu", "--variants", ",".join(rows), timeout=600)
    assert [r["mode"] for r in got] == rows
