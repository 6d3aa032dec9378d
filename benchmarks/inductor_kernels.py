"""The kernels torch.compile makes of one DiT training step on a Hopper GPU, listed without a GPU.

    python benchmarks/inductor_kernels.py --arch DiT-XL/2 --batch 128                 # CUTLASS GEMMs, SDPA
    python benchmarks/inductor_kernels.py --arch DiT-XL/2 --batch 128 --attention --bias-grads
    python benchmarks/inductor_kernels.py --arch DiT-XL/2 --batch 128 --source triton_red_fused_stack_sum

The model's forward and backward are traced on fake tensors and lowered by inductor's Triton code generator as it
lowers them for a CUDA GPU. Where the machine has no GPU, this script:
- points Triton at an sm_90 target;
- gives inductor's scheduler a GPU's fusion rules (loop reordering, mix-order reductions) and 132 SMs;
- turns on the model's training kernels (fused norm passes, Triton attention, the MLP's epilogue GEMMs), which it
  would take on a Hopper GPU;
- lets ``--inductor combo_kernels=True`` group the nodes as it would on a GPU.

Nothing runs: the listing stops where inductor would load the compiled kernels. It prints each graph's kernels with
calls per step and elements per call. A kernel named ``triton_poi_fused_<n>``, with no ATen op in its name, copies
a buffer that no op of the model asked for. Such copies were the 4 ms per DiT-XL/2 step that inductor added before
the attention backward, when its analysis took the kernel for writing its inputs (2026-12-01, runs 39-42). This
listing shows them at the commit before the fix and not after it.

What it cannot show is time. Inductor's choices that depend on timing are left out: autotuned block sizes, and
``max-autotune`` templates. Nor does it match a GPU build in every fusion. Most kernels of run 40's profile (H200,
torch 2.11) are here under the same names. Its 2.7 ms ``triton_red_fused__to_copy_add_select_stack_sum_view`` is
not: here, with torch 2.11 as with 2.15, those ops are three pointwise kernels and a reduction.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

Tensor = torch.Tensor


@dataclass
class Kernel:
    name: str
    calls: int
    numel: str   # elements per call: x, or x × r for a reduction; a combo kernel's parts: their x each
    source: str
    parts: int = 1  # > 1: a combo kernel (``combo_kernels``), independent kernels in one launch


def offline_hopper() -> None:
    """Process-wide: inductor lowers CPU tensors with its Triton backend as for an sm_90 GPU (see the docstring)."""
    import torch._dynamo.device_interface as devices
    import torch._inductor.scheduler as scheduler
    import triton
    import triton.compiler.compiler as triton_compiler
    from triton.backends.compiler import GPUTarget

    hopper = GPUTarget("cuda", 90, 128)

    class Driver:  # what Triton asks of its driver while compiling
        def get_current_target(self):
            return hopper

        def get_current_device(self):
            return 0

    triton.runtime.driver.set_active(Driver())
    make_backend = triton_compiler.make_backend
    triton_compiler.make_backend = lambda target: make_backend(hopper if target.backend == "cpu" else target)
    devices.CpuInterface.raise_if_triton_unavailable = staticmethod(lambda device=None: None)
    sms = devices.CpuDeviceProperties(132)  # an H100's / H200's SMs, which inductor's reduction splits count
    devices.CpuInterface.Worker.get_device_properties = staticmethod(lambda device=None: sms)
    torch._inductor.config.cpu_backend = "triton"
    torch._inductor.config.compile_threads = 1

    # the scheduler's GPU-only fusions: loop reordering and index inversion, mix-order reductions
    scheduler.BaseSchedulerNode.is_cpu = lambda self: False
    scheduler.BaseSchedulerNode.is_gpu = lambda self: True
    scheduler._is_gpu_triton_backend = lambda node1, node2: True
    is_gpu = scheduler.is_gpu
    gpu_like = lambda device_type: device_type == "cpu" or is_gpu(device_type)  # noqa: E731
    scheduler.is_gpu = gpu_like
    create_backend = scheduler.Scheduler.create_backend

    def backend_for(self, device):  # the backend itself: CPU's, without a device index
        scheduler.is_gpu = is_gpu
        try:
            return create_backend(self, device)
        finally:
            scheduler.is_gpu = gpu_like

    scheduler.Scheduler.create_backend = backend_for
    combos = scheduler.ForeachKernelSchedulerNode  # combo kernels (off unless asked for) group GPU nodes only

    def groupable(nodes):  # as for a GPU: all but the consumers of mix-order reductions
        mixed = {name for node in nodes if isinstance(node, scheduler.FusedMixOrderReductions)
                 for name in node.get_buffer_names()}
        return [node for node in nodes if not node.used_buffer_names() & mixed]

    combos._filter_nodes_for_combo_kernel_grouping = staticmethod(groupable)


def hopper_training_paths(attention: bool, bias_grads: bool, sums_kernel: bool, fp32_weight_grads: bool) -> None:
    """The model's training kernels on (CPU) tensors, as on a Hopper GPU: the fused norm passes, the MLP's epilogue
    GEMMs, and with ``attention`` the Triton attention kernels at every head width; the switches of
    ``fused_norm_train``, ``flash_attention`` and ``weight_grads`` named after them."""
    from hddm_p2p.models import flash_attention, fused_mlp, fused_norm_train, sm90_gemm, weight_grads
    from hddm_p2p.models.fused_norm import records_grad

    fused_norm_train.enabled, fused_norm_train.sums_kernel = True, sums_kernel
    fused_norm_train.usable = lambda x: x.dim() == 3 and torch.is_grad_enabled()
    fused_mlp.path = lambda fc1, fc2, x, sampling, training: "training" if records_grad(x, fc1.weight) else None
    sm90_gemm.enabled = True
    weight_grads.enabled = fp32_weight_grads
    weight_grads.matmul_fp32 = _gemm_fp32  # one GEMM, as cuBLAS's fp32 output on CUDA
    flash_attention.enabled = attention
    fused_norm_train.bias_grads = flash_attention.bias_grads = bias_grads
    if attention:
        flash_attention.runs = lambda device, dtype, d, grad: grad and dtype in (torch.bfloat16, torch.float16)
        flash_attention.takes_bias_grad = lambda x, layer, d: (
            bias_grads and layer.bias is not None and layer.bias.requires_grad and torch.is_grad_enabled())


@torch.library.custom_op("hddm_offline::gemm_fp32", mutates_args=())
def _gemm_fp32(a: Tensor, b: Tensor) -> Tensor:
    """Stands in for ``torch.mm(a, b, out_dtype=torch.float32)``, which inductor lowers for CUDA tensors only: an
    extern GEMM either way, with no Triton kernel of its own."""
    return a.float() @ b.float()


@_gemm_fp32.register_fake
def _(a: Tensor, b: Tensor) -> Tensor:
    return a.new_empty(a.shape[0], b.shape[1], dtype=torch.float32)


def lower_training_step(arch: str, batch: int, debug_dir: Path) -> dict[str, str]:
    """Inductor's wrapper code per graph ("forward", "backward") of the compiled DiT-``arch`` at ``batch``."""
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.aot_autograd import make_boxed_func
    from torch._functorch.partitioners import min_cut_rematerialization_partition
    from torch._inductor.compile_fx import compile_fx_inner
    from torch._inductor.decomposition import select_decomp_table
    from torch._subclasses.fake_tensor import FakeTensorMode

    from hddm_p2p.models import build_dit, get_preset

    def lower(gm, inputs, **kwargs):  # inductor as far as loading the kernels, which it cannot here
        try:
            compile_fx_inner(gm, inputs, **kwargs)
        except Exception as e:  # noqa: BLE001 - the code is written by then; anything else shows below
            if "launcher" not in str(e):
                print(f"inductor stopped early: {type(e).__name__}: {str(e)[:300]}", file=sys.stderr)
        return make_boxed_func(gm.forward)  # the graph itself then runs, on fake tensors

    backend = aot_autograd(fw_compiler=lower, bw_compiler=lower, decompositions=select_decomp_table(),
                           partition_fn=min_cut_rematerialization_partition)
    with torch.device("meta"):
        model = build_dit(get_preset(arch, input_size=32, in_channels=4))
    with torch._dynamo.config.patch(debug_dir_root=str(debug_dir)), \
            torch._inductor.config.patch({"trace.enabled": True}), FakeTensorMode(allow_non_fake_inputs=True):
        model = model.to_empty(device="cpu")
        model.residual_dtype = torch.bfloat16
        step = torch.compile(model, backend=backend)
        x, t = torch.empty(batch, 4, 32, 32), torch.empty(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = step(x, t).float().square().mean()
        loss.backward()
    codes = {}
    for path in sorted(debug_dir.rglob("output_code.py")):
        kind = "backward" if "backward" in path.parent.name else "forward"
        codes[kind] = path.read_text()
    return codes


def kernels(code: str) -> list[Kernel]:
    """The kernels one graph's wrapper launches, in launch order, with calls and elements per call."""
    body = code[code.find("def call("):]
    calls = Counter(re.findall(r"^\s+(\w+)\.run\(", body, re.M))
    found = []
    for name in dict.fromkeys(re.findall(r"^\s+(\w+)\.run\(", body, re.M)):
        start = code.find(f"def {name}(")
        source = code[start:code.find("''', device_str", start)] if start >= 0 else ""
        xs = re.findall(r"^\s+xnumel = (\d+)$", source, re.M)
        rs = [r for r in re.findall(r"^\s+r0_numel = (\d+)$", source, re.M) if r != "1"]
        if len(xs) > 1:
            numel = f"{len(xs)} parts: " + ", ".join(xs[:3]) + (", ..." if len(xs) > 3 else "")
        else:
            numel = " x ".join(xs + rs) or "-"
        found.append(Kernel(name, calls[name], numel, source, max(1, len(xs))))
    return found


def unnamed_copies(found: list[Kernel]) -> list[Kernel]:
    """Kernels made by inductor for no ATen op of the model: copies of a buffer (combo kernels, which have no op
    names either, left out)."""
    return [k for k in found if re.fullmatch(r"triton_poi_fused_\d+", k.name) and k.parts == 1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="DiT-XL/2")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--attention", action="store_true", help="the Triton attention kernels (else SDPA)")
    ap.add_argument("--bias-grads", action="store_true", help="bias gradients from the kernels' sums")
    ap.add_argument("--sums-kernel", action="store_true", help="the norm passes' per-sample sums added by our kernel (the library's default; without: inductor's code)")
    ap.add_argument("--fp32-weight-grads", action="store_true", help="weight gradients from the GEMMs in fp32")
    ap.add_argument("--inductor", action="append", default=[], metavar="KEY=VALUE",
                    help="an inductor config setting (Python literal), e.g. combo_kernels=True; repeatable")
    ap.add_argument("--source", metavar="NAME", help="also print the Triton source of kernels whose name has NAME")
    ap.add_argument("--keep", type=Path, help="keep inductor's debug files (graphs, IR, code) here")
    args = ap.parse_args(argv)
    offline_hopper()
    for setting in args.inductor:
        key, _, value = setting.partition("=")
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            ap.error(f"--inductor {setting!r}: the value is not a Python literal (True, 8, 'name')")
        try:
            torch._inductor.config.patch({key: value}).__enter__()
        except (AttributeError, KeyError) as e:
            ap.error(f"--inductor {setting!r}: {e}")
    hopper_training_paths(args.attention, args.bias_grads, args.sums_kernel, args.fp32_weight_grads)
    with tempfile.TemporaryDirectory() as tmp:
        codes = lower_training_step(args.arch, args.batch, args.keep or Path(tmp))
    if set(codes) != {"forward", "backward"}:
        sys.exit(f"error: inductor wrote code for {sorted(codes) or 'no graph'}; run with --keep DIR to see why")
    print(f"{args.arch}, batch {args.batch}: inductor's kernels per training step "
          f"(attention: {'Triton' if args.attention else 'SDPA'}, bias grads in kernels: {args.bias_grads}, "
          f"norm sums kernel: {args.sums_kernel}, fp32 weight grads: {args.fp32_weight_grads})")
    for kind in ("forward", "backward"):
        found = kernels(codes[kind])
        print(f"--- {kind}: {len(found)} kernels, {sum(k.calls for k in found)} launches")
        for k in found:
            print(f"  {k.calls:4d} x  {k.numel:>28}  {k.name}")
        if torch._inductor.config.combo_kernels:  # then inductor names no kernel by its ops
            print("  copies for no op of the model: not told apart with combo_kernels (no kernel has op names)")
        else:
            copies = unnamed_copies(found)
            print(f"  copies for no op of the model: {', '.join(k.name for k in copies) if copies else 'none'}")
        for k in found:
            if args.source and args.source in k.name:
                print(k.source)


if __name__ == "__main__":
    main()
