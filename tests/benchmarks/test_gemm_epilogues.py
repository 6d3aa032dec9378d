"""The GEMM epilogue benchmark runs at toy size on CPU (the ops' PyTorch fallbacks) and prints every row."""

from tests.benchmarks import run_rows


def test_gemm_epilogues_prints_each_block_matmul(tmp_path):
    out, rows = run_rows("gemm_epilogues.py", tmp_path, "--arch", "tiny", "--batch", "2", "--input-size", "8",
                         "--iters", "2", "--device", "cpu")
    assert [r["gemm"] for r in rows] == ["qkv", "proj", "fc1+gelu", "fc1 plain", "fc2", "train fc1+gelu+aux",
                                         "train dgelu, sum", "train dgelu+bgrad"]
    assert all(r["pytorch_ms"] > 0 and r["lt_tuned_ms"] > 0 and r["tokens"] == rows[0]["tokens"] > 0 for r in rows)
    assert "cuBLASLt found: False" in out.stdout
    assert all(r["sm90_ms"] is None and r["sm90_rel_err"] is None for r in rows)  # no Hopper GPU: no CUTLASS column
