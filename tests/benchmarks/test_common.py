"""The benchmarks' shared profile summary: the GPU's idle time between kernels, from profiler events."""

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _common import idle_summary  # noqa: E402


def _kernel(start_us: float, end_us: float, name: str, device: str = "CUDA"):
    return SimpleNamespace(time_range=SimpleNamespace(start=start_us, end=end_us), name=name,
                           device_type=SimpleNamespace(name=device))


def test_idle_time_counts_only_the_gaps_no_kernel_covers():
    """Overlapping kernels leave no gap; host events are ignored; the longest gap is named by its neighbours."""
    events = [_kernel(0, 100, "gemm"), _kernel(50, 120, "norm"), _kernel(130, 200, "attn"),
              _kernel(0, 1000, "python", device="CPU"), _kernel(500, 600, "fc2"),
              _kernel(600, 600, "empty")]
    lines = idle_summary(events, steps=2)
    assert lines[0].startswith("  GPU span per step 0.30 ms, idle 0.15 ms (51.7%) in 1 gaps")
    assert "0.300 ms  after attn  before fc2" in lines[1] and "0.010 ms  after norm  before attn" in lines[2]


def test_no_gpu_events_no_summary():
    assert idle_summary([_kernel(0, 10, "cpu op", device="CPU")], steps=1) == []
