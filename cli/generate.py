"""``hddm generate``: sample an assembled ensemble into PNGs, a grid and an expert-usage plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from hddm_p2p.cli.options import Json, Seed
from hddm_p2p.cli.root import app, console

Opt = typer.Option


@app.command()
def generate(
    ensemble: Annotated[Path, Opt("--ensemble", help="Lock file written by `hddm assemble`.")],
    out: Annotated[Path, Opt("--out", help="Output folder (must not exist; it appears only when complete).")],
    n: Annotated[int, Opt("--n", help="Number of samples.")] = 16,
    steps: Annotated[int, Opt("--steps", help="ODE solver steps.")] = 30,
    solver: Annotated[str, Opt("--solver", help="euler | heun")] = "heun",
    mode: Annotated[str, Opt("--mode", help="top-1 | top-k | full")] = "top-k",
    k: Annotated[int, Opt("--k", help="Experts per sample in top-k mode.")] = 2,
    threshold: Annotated[Optional[float], Opt("--threshold", help="Override the router: flow-matching experts "
                                              "for t > TAU, converted experts for t ≤ TAU.")] = None,
    prompt: Annotated[Optional[str], Opt("--prompt", help="Text prompt (text-conditioned ensembles).")] = None,
    class_id: Annotated[Optional[int], Opt("--class", help="Class id (class-conditioned ensembles).")] = None,
    cfg: Annotated[float, Opt("--cfg", help="Classifier-free guidance scale (1 = off).")] = 1.0,
    seed: Seed = 0,
    device: Annotated[str, Opt("--device", help="cpu, cuda, cuda:1 ...")] = "cpu",
    dtype: Annotated[str, Opt("--dtype", help="fp32 | bf16 (expert weights and activations).")] = "fp32",
    offload: Annotated[bool, Opt("--offload", help="Keep experts on the CPU; move one to --device only "
                                 "while it runs.")] = False,
    devices: Annotated[Optional[str], Opt("--devices", help="Expert-parallel: place the experts across these "
                                          "devices (e.g. cuda:0,cuda:1) by size; sampling stays on --device.")] = None,
    expert_parallel: Annotated[bool, Opt("--expert-parallel", help="Like --devices with every visible GPU.")] = False,
    compile: Annotated[bool, Opt("--compile", help="torch.compile each expert's blocks once loaded (experts of "
                                 "one architecture share the compiled graph); pays off on GPUs for long runs.")] = False,
    batch_size: Annotated[int, Opt("--batch-size", help="Samples per batch (does not change the images).")] = 64,
    force: Annotated[bool, Opt("--force", help="Replace --out if it exists.")] = False,
    no_progress: Annotated[bool, Opt("--no-progress", help="Hide progress bars.")] = False,
    as_json: Json = False,
):
    """Sample from an ensemble. Every file the lock names is verified again; each expert's output is converted
    as its manifest declares; experts load only when routed to. Writes OUT/samples/000000.png …, OUT/grid.png,
    OUT/usage.png, OUT/usage.json and OUT/generate.json. The same lock and --seed give the same images.

    Example: hddm generate --ensemble ensemble.lock.json --n 64 --steps 30 --solver heun --mode top-k --k 2 --seed 0 --out samples/
    """
    from hddm_p2p.pipeline.generate import GenerateConfig, generate as run
    from hddm_p2p.pipeline.placement import parse_devices

    res = run(GenerateConfig(ensemble=ensemble, out=out, n=n, steps=steps, solver=solver, mode=mode, k=k,
                             threshold=threshold, cfg=cfg, seed=seed, prompt=prompt, class_id=class_id, device=device,
                             dtype=dtype, offload=offload, compile=compile,
                             devices=parse_devices(devices, expert_parallel), batch_size=batch_size, force=force,
                             progress=not no_progress))
    if as_json:
        print(json.dumps(res.to_json()))
        return
    table = Table("expert", "objective", "schedule", "mean weight", "calls", "samples run", "loaded", "device",
                  title=f"{n} samples in {res.seconds:.1f}s · router {res.router} · {mode}")
    for e, w in zip(res.experts, res.usage):
        table.add_row(e["name"], e["objective"], e["schedule"], f"{w:.3f}", str(e["calls"]),
                      str(e["rows"]), "yes" if e["loaded"] else "no", e["device"])
    console.print(table)
    console.print(f"wrote [bold]{res.out}[/]: samples/, grid.png, usage.png, usage.json, generate.json")
