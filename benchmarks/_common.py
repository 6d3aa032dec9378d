"""Shared by the GPU benchmarks: dense bf16 peaks, attention-backend selection and a kernel-time breakdown."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from contextlib import nullcontext

import torch

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s.
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0,
                    "A10G": 125.0, "RTX 4090": 165.0}

# Kernel-name fragments → category, first match wins (cuBLAS names its Hopper GEMMs nvjet_*/sm90_xmma_*).
CATEGORIES = (("attention", ("flash", "fmha", "attention", "cudnn", "sdpa")),
              ("matmul", ("gemm", "xmma", "cutlass", "nvjet", "cublas", "splitk", "sm90")),
              ("optimizer/EMA/clip", ("adam", "multi_tensor", "foreach", "lerp")),
              ("fused element-wise (Triton)", ("triton", "norm_modulate", "sample_sums")),  # + our norm kernels
              ("other element-wise", ("elementwise", "vectorized", "reduce", "layer_norm", "gelu", "copy", "cat")))


def fresh_compiles() -> None:
    """Make every ``torch.compile`` in this process compile from scratch. Inductor's on-disk caches key a
    compiled graph on the graph dynamo traced, not on the settings read while lowering it: a row that
    differs from the row before only in such a setting (SDPA's backend, for one) would silently get the
    row before's kernels. (2026-11-30 run 2 and 2026-12-01 run 3's FlashAttention-2 rows ran cuDNN's
    kernels that way; docs/benchmarks.md.)"""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = False
    if hasattr(functorch_config, "enable_autograd_cache"):
        functorch_config.enable_autograd_cache = False


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def median_time(fn, iters: int, device: torch.device, warmup: int = 2, inner: int = 1) -> float:
    """Median seconds per call of ``fn`` over ``iters`` rounds of ``inner`` back-to-back calls, after
    ``warmup`` calls: CUDA events on the GPU, wall clock elsewhere. ``inner`` > 1 keeps the Python dispatch
    of one call out of the figure of a kernel shorter than it."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            for _ in range(inner):
                fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) / 1e3 / inner)
        else:
            s = time.perf_counter()
            for _ in range(inner):
                fn()
            times.append((time.perf_counter() - s) / inner)
    return statistics.median(times)


def attention_backend(name: str):
    """A context choosing SDPA's backend: "auto" (PyTorch's choice), "cudnn", "flash" or "efficient"."""
    if name == "auto":
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel({"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                        "efficient": SDPBackend.EFFICIENT_ATTENTION}[name])


def _linear_flops(x, w, *_):  # x (M, K) · w (N, K)ᵀ
    return 2 * x[0] * x[1] * w[0]


def _mm_flops(a, b, *_):  # a (M, K) · b (K, N)
    return 2 * a[0] * a[1] * b[1]


# The matmul ops a compiled step calls, and their FLOPs from the operands' shapes (2 per multiply-add).
MATMUL_FLOPS = {"aten::mm": _mm_flops, "aten::addmm": lambda bias, a, b, *_: _mm_flops(a, b),
                "hddm::linear_bias": _linear_flops, "hddm::linear_gelu": _linear_flops,
                "hddm::linear_gelu_aux": _linear_flops, "hddm::linear_gated_residual": _linear_flops,
                "hddm::matmul_dgelu": _mm_flops, "hddm::matmul_dgelu_bgrad": _mm_flops}


def matmul_kernels(event) -> list:
    """The matmul kernels an op launched, its child ops' included. Only matmul kernels: the profiler can attribute
    others to an op."""
    own = [k for k in getattr(event, "kernels", ()) if category(k.name) == "matmul"]
    return own + [k for child in getattr(event, "cpu_children", ()) for k in matmul_kernels(child)]


def matmul_kernel_us(event) -> float:
    """The GPU time of the matmul kernels an op launched (``matmul_kernels``)."""
    return sum(k.duration for k in matmul_kernels(event))


def _inside_matmul(event) -> bool:
    parent = getattr(event, "cpu_parent", None)
    while parent is not None:
        if parent.name in MATMUL_FLOPS:
            return True
        parent = getattr(parent, "cpu_parent", None)
    return False


def matmul_rows(events, steps: int, peak: float | None, show: int = 12, time_us=matmul_kernel_us,
                kernel_ms: dict[str, float] | None = None) -> list[str]:
    """Per matmul op and operand shapes (the profiler's events, recorded with shapes): GPU time per step, calls per
    step and the TFLOP/s its kernels reached (and the share of ``peak``), slowest first. Says which GEMMs of a
    step fall short of the rest. ``time_us``: an event's time (its matmul kernels' on the GPU).

    ``kernel_ms``: each kernel's own GPU time per step (the device's events). Where the ops' rows hold more of a
    kernel than ran, a line says so: the profiler gave its launches to more than one op, and those rows' times
    and TFLOP/s are wrong. In compiled DiT-XL/2 steps (2026-12-02 runs 50-53) the forward's bias GEMMs held
    about 40 % more time than their kernel ran, which had read as a slow GEMM."""
    # (op, shapes) → [calls, µs, shapes, µs per kernel name]
    groups: dict[tuple, list] = defaultdict(lambda: [0, 0.0, None, defaultdict(float)])
    for e in events:
        if e.name not in MATMUL_FLOPS or len([s for s in e.input_shapes or [] if s]) < 2:
            continue
        if _inside_matmul(e):  # an op's own inner call (addmm within addmm): its kernels are the outer op's
            continue
        group = groups[(e.name, repr(e.input_shapes))]
        group[0] += 1
        group[1] += time_us(e)
        group[2] = e.input_shapes
        for k in matmul_kernels(e):
            group[3][k.name] += k.duration
    rows = []
    for (name, _), (calls, us, input_shapes, kernels) in groups.items():
        if us <= 0:
            continue
        tflops = MATMUL_FLOPS[name](*input_shapes) * calls / (us / 1e6) / 1e12
        kernel = max(kernels, key=kernels.get) if kernels else "-"
        rows.append((us / steps / 1e3, tflops, calls / steps, name, [s for s in input_shapes if s], kernel))
    if not rows:
        return []
    lines = ["  matmuls by shape (GPU ms per step, TFLOP/s of their kernels, the kernel taking most of the time):"]
    for ms, tflops, calls, key, shapes, kernel in sorted(rows, key=lambda r: -r[0])[:show]:
        share = f"{100 * tflops / peak:5.1f}%" if peak else "  n/a"
        dims = " ".join("x".join(map(str, s)) for s in shapes)
        lines.append(f"    {ms:8.3f} ms  {tflops:6.0f} TFLOP/s {share}  {calls:5.0f}x  {key} {dims}  [{kernel[:60]}]")
    return lines + overattributed(groups, steps, kernel_ms or {})


def overattributed(groups: dict, steps: int, kernel_ms: dict[str, float]) -> list[str]:
    """Lines for the kernels that ``matmul_rows``' groups hold more of (per step) than ran in all."""
    held: dict[str, float] = defaultdict(float)
    for _, _, _, kernels in groups.values():
        for name, us in kernels.items():
            held[name] += us / steps / 1e3
    return [f"  ! the rows above hold {ms:.3f} ms per step of {name[:60]}, which ran {kernel_ms[name]:.3f} ms:"
            " the profiler gave its launches to more than one op, so those rows' times and TFLOP/s are too high"
            for name, ms in sorted(held.items(), key=lambda x: -x[1])
            if name in kernel_ms and ms > 1.02 * kernel_ms[name] + 1e-3]


def annotation(event) -> bool:
    """A region the profiler annotates on the GPU timeline (inductor's ``## Call CompiledFxGraph ##``, an optimizer's
    step): it spans kernels and the gaps between them, and is no kernel itself."""
    name = getattr(event, "name", None) or event.key  # an event's name, an average's key
    return bool(getattr(event, "is_user_annotation", False)) or name.startswith("## ")


def category(kernel: str) -> str:
    low = kernel.lower()
    return next((c for c, keys in CATEGORIES if any(k in low for k in keys)), "other")


def kernel_breakdown(fn, steps: int = 3, top: int = 12) -> str:
    """Run ``fn`` ``steps`` times under the profiler; GPU time per step by kernel category, the top kernels, and
    the matmuls' TFLOP/s by operand shape."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    per_kernel: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        if e.device_type.name == "CPU" or annotation(e):
            continue  # ops and annotated regions: their device time is their kernels', counted under their names
        us = getattr(e, "self_device_time_total", None)
        us = e.self_cuda_time_total if us is None else us
        if us > 0:
            per_kernel[e.key] += us / steps / 1e3  # ms per step
    per_cat: dict[str, float] = defaultdict(float)
    for k, ms in per_kernel.items():
        per_cat[category(k)] += ms
    total = sum(per_cat.values())
    lines = [f"GPU kernel time per step: {total:.2f} ms"]
    lines += [f"  {c:30} {ms:8.2f} ms  {100 * ms / total:5.1f}%" for c, ms in sorted(per_cat.items(), key=lambda x: -x[1])]
    lines += idle_summary(prof.events(), steps)
    lines.append("  top kernels:")
    lines += [f"    {ms:8.3f} ms  {category(k)[:10]:10}  {k[:110]}"
              for k, ms in sorted(per_kernel.items(), key=lambda x: -x[1])[:top]]
    lines += matmul_rows(prof.events(), steps, peak_tflops(torch.device("cuda")), kernel_ms=per_kernel)
    return "\n".join(lines)


def idle_summary(events, steps: int, show: int = 5) -> list[str]:
    """Where the GPU waited: from the first kernel's start to the last one's end, the time no kernel ran, per
    step, and the longest gaps with the kernels around them (host work the GPU waited for, or a sync)."""
    spans = sorted((e.time_range.start, e.time_range.end, e.name) for e in events
                   if getattr(e, "device_type", None) is not None and e.device_type.name == "CUDA"
                   and not annotation(e) and e.time_range.end > e.time_range.start)
    if not spans:
        return []
    gaps, reach, before = [], spans[0][1], spans[0][2]
    for start, end, name in spans[1:]:
        if start > reach:
            gaps.append((start - reach, before, name))
        if end >= reach:
            reach, before = end, name
    wall = (reach - spans[0][0]) / 1e3 / steps
    idle = sum(g for g, _, _ in gaps) / 1e3 / steps
    lines = [f"  GPU span per step {wall:.2f} ms, idle {idle:.2f} ms ({100 * idle / wall:.1f}%) in "
             f"{len(gaps) / steps:.0f} gaps; longest:"]
    longest = sorted(gaps, reverse=True)[:show]
    lines += [f"    {g / 1e3:8.3f} ms  after {a[:50]}  before {b[:50]}" for g, a, b in longest]
    return lines


def add_shape_args(ap, iters: int = 10) -> None:
    """The options of the single-op benchmarks: (arch, batch) pairs, latent size, rounds, device, JSON log."""
    ap.add_argument("--arch", action="append", help="DiT preset; repeat, each with its --batch (default DiT-XL/2)")
    ap.add_argument("--batch", action="append", type=int, help="batch of the --arch at the same position (128)")
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--iters", type=int, default=iters)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="append one JSON line per row to this file")


def shape_setup(ap, args, extra: str = "") -> tuple[list[tuple[str, int]], torch.device, torch.dtype]:
    """(arch, batch) pairs, the device and the dtype (bf16 on a GPU, fp32 on the CPU); prints the device line
    (with ``extra`` appended); exits through ``ap.error`` unless each --arch has its --batch."""
    archs, batches = args.arch or ["DiT-XL/2"], args.batch or [128]
    if len(batches) != len(archs):
        ap.error("give one --batch per --arch")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    print(f"device: {torch.cuda.get_device_name(device) if cuda else 'cpu'}; torch {torch.__version__}{extra}")
    return list(zip(archs, batches)), device, torch.bfloat16 if cuda else torch.float32
