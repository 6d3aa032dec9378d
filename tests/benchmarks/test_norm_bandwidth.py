"""The norm-kernel bandwidth benchmark runs at toy size on CPU (the plain PyTorch path) and prints its rows."""

from tests.benchmarks import run_rows


def test_norm_bandwidth_prints_a_row_per_arch(tmp_path):
    _, rows = run_rows("norm_bandwidth.py", tmp_path, "--arch", "tiny", "--batch", "2", "--arch", "DiT-S/2",
                       "--batch", "1", "--input-size", "8", "--iters", "2", "--inner", "2", "--device", "cpu")
    assert [r["arch"] for r in rows] == ["tiny", "DiT-S/2"]
    assert all(r["kernel_tbs"] > 0 and r["norm_tbs"] > 0 and r["add_tbs"] > 0 and r["config"] is None for r in rows)
