"""The benchmarks' shared profile summary: the GPU's idle time between kernels, and the matmuls' TFLOP/s by operand
shape, from profiler events."""

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import torch  # noqa: E402
from _common import annotation, idle_summary, matmul_rows  # noqa: E402


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


def _op(name, shapes, calls, us, children=()):
    """``calls`` op events, each with one matmul kernel of ``us / calls`` µs and one element-wise kernel that the
    table must not count."""
    kernels = [SimpleNamespace(name="nvjet_sm90_tst_192x192", duration=us / calls),
               SimpleNamespace(name="triton_poi_fused__to_copy_3", duration=500.0)]
    return [SimpleNamespace(name=name, input_shapes=shapes, kernels=kernels, cpu_children=list(children))
            for _ in range(calls)]


def test_matmul_rows_give_each_shapes_tflops_and_share_of_peak():
    """FLOPs from the operands' shapes (mm, addmm with its bias first, our linear ops with the weight (N, K), the
    dGELU op's grad (M, N) · w (N, K)); time from the matmul kernels only, child ops' included; slowest first;
    other ops and ops without matmul kernels are left out."""
    m, k, n = 32768, 1152, 4608
    inner = SimpleNamespace(name="cublas", input_shapes=[], cpu_children=[],
                            kernels=[SimpleNamespace(name="cutlass_gemm", duration=300.0)])
    events = (_op("aten::mm", [[m, k], [k, n], [m, n]], 4, 2 * 1000.0)  # 2 steps, 1 ms per step
              + _op("aten::addmm", [[n], [m, k], [k, n], [], []], 2, 1000.0)
              + _op("hddm::linear_gelu_aux", [[m, k], [n, k], [n]], 2, 1000.0, children=[inner])
              + _op("hddm::matmul_dgelu", [[m, k], [k, n], [m, n]], 2, 1000.0)
              + _op("aten::linear", [[m, k], [n, k], [n]], 2, 5000.0)
              + [SimpleNamespace(name="aten::mm", input_shapes=[[8, 8], [8, 8]], kernels=[], cpu_children=[])])
    outer = events[0]  # an inner call of the same op, counted in the outer one's time and not again
    inner_mm = SimpleNamespace(name="aten::mm", input_shapes=outer.input_shapes, cpu_parent=outer, cpu_children=[],
                               kernels=[SimpleNamespace(name="nvjet_inner", duration=250.0)])
    outer.cpu_children, events = [inner_mm], events + [inner_mm]
    lines = matmul_rows(events, steps=2, peak=989.0)
    flops = 2 * m * k * n
    assert len(lines) == 5 and "TFLOP/s" in lines[0]
    assert lines[1].split()[0] == "1.125" and f"{flops * 4 / 2.25e-3 / 1e12:.0f} TFLOP/s" in lines[1]
    assert "aten::mm 32768x1152 1152x4608 32768x4608" in lines[1] and "2x" in lines[1]
    assert f"{flops * 2 / 1.6e-3 / 1e12:.0f} TFLOP/s" in lines[2] and "hddm::linear_gelu_aux" in lines[2]
    assert f"{100 * flops * 2 / 1.6e-3 / 1e12 / 989:.1f}%" in lines[2]
    assert not any("aten::linear" in line for line in lines)
    assert lines[1].endswith("[nvjet_sm90_tst_192x192]")  # the kernel with most of the row's time, not the inner one's
    assert lines[2].endswith("[nvjet_sm90_tst_192x192]")  # 500 µs a call of its own against its child op's 300


def test_matmul_rows_from_a_real_profile():
    """The profiler's own averages (a CPU profile here, its CPU time standing in for kernel time) carry the keys
    and shapes ``matmul_rows`` reads."""
    from torch.profiler import ProfilerActivity, profile

    a, b, bias = torch.randn(64, 32), torch.randn(32, 16), torch.randn(16)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        torch.mm(a, b)
        torch.addmm(bias, a, b)
    lines = matmul_rows(prof.events(), 1, None, time_us=lambda e: e.cpu_time_total)
    assert any("aten::mm 64x32 32x16" in line for line in lines)
    assert any("aten::addmm 16 64x32 32x16" in line and "n/a" in line for line in lines)


def test_annotated_regions_are_no_kernels():
    """Inductor's and the optimizer's annotated regions, as events or as averages (which have a key, not a name),
    are told apart from kernels; a region spanning a gap does not hide it."""
    assert annotation(SimpleNamespace(name="## Call CompiledFxGraph abc ##"))
    assert annotation(SimpleNamespace(key="Optimizer.step#AdamW.step", is_user_annotation=True))
    assert not annotation(SimpleNamespace(key="nvjet_sm90_tst_192x192", is_user_annotation=False))
    region = _kernel(0, 1000, "## Call CompiledFxGraph abc ##")
    assert idle_summary([region, _kernel(0, 100, "gemm"), _kernel(300, 400, "norm")], steps=1)[0].endswith(
        "idle 0.20 ms (50.0%) in 1 gaps; longest:")


def test_matmul_rows_say_when_the_ops_hold_more_of_a_kernel_than_ran():
    """Rows holding 3 ms per step of a kernel whose own events add up to 2 ms: one line names it; a kernel held as
    long as it ran gets none."""
    events = (_op("aten::addmm", [[8], [16, 8], [8, 8], [], []], 2, 4000.0)  # 2 ms per step over 2 steps
              + _op("aten::mm", [[16, 8], [8, 8]], 2, 2000.0))  # 1 ms more of the same kernel
    lines = matmul_rows(events, steps=2, peak=None, kernel_ms={"nvjet_sm90_tst_192x192": 2.0, "nvjet_other": 1.0})
    flagged = [line for line in lines if line.startswith("  !")]
    assert len(flagged) == 1 and "3.000 ms" in flagged[0] and "ran 2.000 ms" in flagged[0]
    exact = matmul_rows(events, steps=2, peak=None, kernel_ms={"nvjet_sm90_tst_192x192": 3.0})
    assert not any(line.startswith("  !") for line in exact)
