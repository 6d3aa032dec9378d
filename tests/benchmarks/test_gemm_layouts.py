"""The GEMM layout benchmark runs at toy size on CPU and prints every matmul of a block in each layout."""

import sys

from tests.benchmarks import BENCHMARKS, run_rows

SCRIPT = BENCHMARKS / "gemm_layouts.py"


def test_gemm_layouts_times_every_pass_of_every_layer(tmp_path):
    _, rows = run_rows("gemm_layouts.py", tmp_path, "--arch", "tiny", "--batch", "2", "--input-size", "8",
                       "--iters", "2", "--inner", "2", "--device", "cpu")
    assert [r["layer"] for r in rows[::8]] == ["qkv", "proj", "fc1", "fc2"]
    assert [r["variant"] for r in rows[:8]] == ["x·Wᵀ +b", "x·Wᵀ", "x·Wt", "x·Wt +b", "g·W", "g·Wtᵀ", "gᵀ·x",
                                                "(xᵀ·g)ᵀ"]  # no sm90 row: no Hopper GPU here
    assert all(r["ms"] > 0 and r["tflops"] > 0 and r["kernel"] == "-" for r in rows)  # no kernel names off CUDA
    assert all(r["vs_first"] == 1.0 for r in rows if r["variant"] in ("x·Wᵀ +b", "g·W", "gᵀ·x"))
    fc2 = rows[24]
    assert (fc2["n"], fc2["k"]) == (64, 256) and fc2["tokens"] == rows[0]["tokens"]


def test_each_layout_computes_the_same_product():
    """Every variant of a pass returns the same matrix (what the table compares is one product, laid out
    differently)."""
    import torch

    sys.path.insert(0, str(SCRIPT.parent))
    import gemm_layouts

    rows = gemm_layouts.cases(16, 8, torch.device("cpu"), torch.float64)
    by_pass = {}
    for layer, pas, variant, _n, _k, fn in rows:  # the forward's products with and without the bias apart
        by_pass.setdefault((layer, pas, "+b" in variant), []).append((variant, fn()))
    assert len(by_pass) == 16 and all(len(outs) == 2 for outs in by_pass.values())
    for key, ((_, first), (variant, out)) in by_pass.items():
        assert torch.allclose(out, first), (key, variant)
