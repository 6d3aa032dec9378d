"""Registers, spilled stack and shared memory of the Triton attention kernels, per autotuning config, without a GPU.

    python benchmarks/kernel_registers.py --arch DiT-XL/2 --arch DiT-B/2            # every config, sm_90
    python benchmarks/kernel_registers.py --arch DiT-XL/2 --kernels head --configs 4

The kernels of ``hddm_p2p.models.flash_attention`` are compiled here for the target (``--sm``, default 90: H100/H200)
at each preset's token count and head width, with Triton's own ptxas; ``cuobjdump`` reads each binary's resource
use. A kernel at 255 registers with stack bytes is spilling to local memory: that config's time goes to memory
traffic the tensor cores wait on. The autotuner still times every config on the GPU; this says which ones cannot be
fast, and why a head width of 72 (two column tiles, 64 + 16) costs more than 64. Nothing is timed: it runs on any
machine with Triton.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from hddm_p2p.models import flash_attention, get_preset

KERNELS = {  # name: (kernel, its autotuning configs, pointer arguments and their element types)
    "forward": ("_flash_forward_kernel", "_FORWARD_CONFIGS", {"QKV": "bf16", "O": "bf16", "LSE": "fp32"}),
    "head": ("_flash_backward_head_kernel", "_HEAD_CONFIGS",
             {"QKV": "bf16", "O": "bf16", "DO": "bf16", "LSE": "fp32", "DQKV": "bf16", "SCRATCH": "fp32",
              "SUMS": "fp32"}),
    "blocks": ("_flash_backward_kernel", "_BACKWARD_CONFIGS",
               {"QKV": "bf16", "O": "bf16", "DO": "bf16", "LSE": "fp32", "DQKV": "bf16", "SCRATCH": "fp32",
                "SUMS": "fp32"}),
}


def compile_kernel(name: str, config, tokens: int, d: int, sm: int):
    """The compiled kernel for one config: pointers and strides 16-byte aligned, as the model's tensors are."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn_name, configs, pointers = KERNELS[name]
    fn = getattr(flash_attention, fn_name)
    values = {"T": tokens, "d": d, **flash_attention.kernel_constants(d, d ** -0.5), **config.kwargs}
    if "SUMS" in pointers:  # with the token sums (a bias to train), at the grain ``launch_backward`` gives
        values["GRAIN"] = flash_attention.smallest_span(getattr(flash_attention, configs))
    signature, constexprs, attrs = {}, {}, {}
    for i, arg in enumerate(fn.arg_names):
        if arg in values:
            signature[arg] = "constexpr"
            constexprs[(i,)] = values[arg]
        else:
            signature[arg] = f"*{pointers[arg]}" if arg in pointers else "i32"
            if arg != "H":  # pointers and strides are multiples of 16 at these shapes; the head count is not
                attrs[(i,)] = [["tt.divisibility", 16]]
    source = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", sm, 128),
                          options={"num_warps": config.num_warps, "num_stages": config.num_stages})


def resource_use(compiled) -> dict:
    """{"regs", "stack", "shared"} of a compiled kernel, per thread (regs, stack bytes) and per program (shared)."""
    from triton.backends.nvidia import compiler as nvidia

    tool = Path(nvidia.__file__).parent / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        out = subprocess.run([str(tool), "--dump-resource-usage", f.name], capture_output=True, text=True,
                             check=True).stdout
    line = next(x for x in out.splitlines() if "REG:" in x)
    field = lambda key: int(line.split(f"{key}:")[1].split()[0])  # noqa: E731
    return {"regs": field("REG"), "stack": field("STACK"), "shared": compiled.metadata.shared}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", help="DiT preset (default DiT-XL/2); repeat for several")
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--kernels", default="head,blocks", help=f"comma-separated: {', '.join(KERNELS)}")
    ap.add_argument("--configs", type=int, default=0, help="only the first N configs of each kernel (0: all)")
    ap.add_argument("--sm", type=int, default=90, help="compute capability to compile for (90: Hopper)")
    ap.add_argument("--json", help="append one JSON line per row to this file")
    args = ap.parse_args(argv)
    kernels = args.kernels.split(",")
    if bad := [k for k in kernels if k not in KERNELS]:
        ap.error(f"unknown kernel {bad[0]!r}; choose from: {', '.join(KERNELS)}")
    if flash_attention.triton is None:
        raise SystemExit("error: Triton is not installed; install it (pip install triton) to compile the kernels")
    print(f"{'arch':10} {'T':>4} {'d':>4} {'kernel':8} {'config':34} {'regs':>5} {'stack B':>8} {'shared B':>9}")
    rows = []
    for arch in args.arch or ["DiT-XL/2"]:
        cfg = get_preset(arch, input_size=args.input_size, in_channels=4)
        tokens, d = (args.input_size // cfg.patch_size) ** 2, cfg.hidden_size // cfg.num_heads
        for name in kernels:
            configs = getattr(flash_attention, KERNELS[name][1])
            for config in configs[:args.configs or None]:
                label = (", ".join(f"{k} {v}" for k, v in config.kwargs.items())
                         + f", {config.num_warps} warps, {config.num_stages} st")
                use = resource_use(compile_kernel(name, config, tokens, d, args.sm))
                rows.append({"arch": arch, "tokens": tokens, "d": d, "kernel": name, "config": label, **use})
                spill = "  spills" if use["stack"] else ""
                print(f"{arch:10} {tokens:>4} {d:>4} {name:8} {label:34} {use['regs']:>5} {use['stack']:>8} "
                      f"{use['shared']:>9}{spill}", flush=True)
    if args.json:
        with open(args.json, "a") as f:
            for r in rows:
                f.write(json.dumps({**r, "sm": args.sm}) + "\n")


if __name__ == "__main__":
    main()
