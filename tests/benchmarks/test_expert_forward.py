"""The expert forward benchmark runs at toy size on CPU, diffusers included, and prints numbers."""

from tests.benchmarks import run_rows


def test_expert_forward_prints_throughput_and_ratio_to_diffusers(tmp_path):
    out, rows = run_rows("expert_forward.py", tmp_path, "--arch", "tiny", "--batch", "2", "--classes", "10",
                         "--variants", "diffusers eager,hddm eager", "--warmup", "1", "--iters", "2", "--device",
                         "cpu")
    assert [r["variant"] for r in rows] == ["diffusers eager", "hddm eager"]
    assert all(r["images_per_s"] > 0 and r["flops_per_image"] > 0 and r["s_per_call_queued"] > 0 for r in rows)
    table = [ln for ln in out.stdout.splitlines() if ln.startswith("tiny ")]
    assert len(table) == 2 and all("n/a" in ln for ln in table)  # no MFU / no compiled diffusers row on CPU
