"""The routed-sampling benchmark runs at toy size on CPU and prints every row (no timing asserts)."""

import json

from tests.benchmarks import run_rows


def test_routed_sampling_prints_step_times_and_images_per_second(tmp_path):
    out, rows = run_rows("routed_sampling.py", tmp_path, "--arch", "tiny", "--router-arch", "tiny", "--experts", "3",
                         "--batch", "6", "--size", "8", "--steps", "2", "--iters", "1", "--modes", "eager",
                         "--device", "cpu")
    rows = {r["row"]: r for r in rows}
    assert {"reference eager", "top-2 eager", "top-2 +batch-cfg eager", "naive eager", "sample heun 2 eager"} == set(rows)
    assert all(r["s_per_step"] > 0 for k, r in rows.items() if "s_per_step" in r)
    assert rows["sample heun 2 eager"]["images_per_s"] > 0
    load = next(ln for ln in out.stdout.splitlines() if ln.startswith("samples per expert"))
    counts = json.loads(load.split(": ", 1)[1])
    assert sum(counts) == 2 * 6 and min(counts) > 0  # top-2 over 6 samples, every expert used
