"""The offline kernel listing: inductor's Triton code for a compiled training step, lowered as for an sm_90 GPU on a
machine without one (fake tensors; nothing runs)."""

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "inductor_kernels.py"
ALL = ("--attention", "--bias-grads", "--sums-kernel")  # the training kernels, all of them


def _launches(lines: list[str], fragment: str) -> int:
    """Launches per step of the listed kernels whose name has ``fragment``."""
    return sum(int(line.split()[0]) for line in lines if line.split()[-1:] and fragment in line.split()[-1]
               and line.split()[0].isdigit())


@functools.cache
def _listing(*flags: str) -> dict[str, list[str]]:
    """The tiny DiT's listing with these flags, per graph (computed once per flag set in this session)."""
    out = subprocess.run([sys.executable, str(SCRIPT), "--arch", "tiny", "--batch", "2", *flags],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    graphs, current = {}, None
    for line in out.stdout.splitlines():
        if line.startswith("--- "):
            current = graphs.setdefault(line[4:].split(":")[0], [])
        elif current is not None:
            current.append(line.strip())
    return graphs


def test_the_training_kernels_are_listed_and_inductor_copies_nothing_for_them():
    """With the attention kernels and the bias gradients inside them, both graphs launch the model's own Triton
    kernels (norm passes, attention forward and backward, the per-sample sums) and no copy that no op asked for:
    before the attention backward computed offsets rather than pointers, inductor copied its inputs
    (``triton_poi_fused_<n>`` here, 4 ms per DiT-XL/2 step on an H200)."""
    pytest.importorskip("triton")
    graphs = _listing(*ALL)
    assert set(graphs) == {"forward", "backward"}
    forward, backward = (" ".join(graphs[g]) for g in ("forward", "backward"))
    assert "_add_norm_modulate_kernel" in forward and "_flash_forward_kernel" in forward
    for kernel in ("_norm_modulate_backward_kernel", "_flash_backward", "_sample_sums_kernel"):
        assert kernel in backward, kernel
    for graph in graphs.values():
        assert graph[-1] == "copies for no op of the model: none", graph[-1]


def test_fp32_weight_grads_drop_the_weight_gradient_casts():
    """With the weight gradients written by the GEMMs in fp32 the backward has no kernel casting them: the tiny
    DiT's two blocks drop at least qkv's, proj's, fc1's and fc2's casts (4 per block)."""
    pytest.importorskip("triton")
    before = _launches(_listing(*ALL)["backward"], "_to_copy")
    after = _launches(_listing(*ALL, "--fp32-weight-grads")["backward"], "_to_copy")
    assert after <= before - 4 * 2, (before, after)


def test_combo_kernels_launch_the_small_kernels_together():
    """``--inductor combo_kernels=True`` (grouped as on a GPU): far fewer launches per step, the groups listed as
    combo kernels of several parts (and no copies claimed: inductor then names no kernel by its ops); a setting
    that is not a literal is refused in one line."""
    pytest.importorskip("triton")
    flags = (*ALL, "--fp32-weight-grads")
    alone, combined = _listing(*flags), _listing(*flags, "--inductor", "combo_kernels=True")
    for graph in ("forward", "backward"):
        assert _launches(combined[graph], "") * 3 <= _launches(alone[graph], "") * 2, graph
        assert "not told apart" in combined[graph][-1]
    assert any(" parts: " in line for line in combined["forward"])
    bad = subprocess.run([sys.executable, str(SCRIPT), "--arch", "tiny", "--inductor", "combo_kernels=maybe"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not a Python literal" in bad.stderr and "Traceback" not in bad.stderr
