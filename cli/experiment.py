"""``hddm experiment run CONFIG.yaml``: run a config-driven reproduction experiment (``hddm_p2p.experiments``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hddm_p2p.cli.options import Device
from hddm_p2p.cli.root import _typer, app, console, err_console

experiment_app = _typer("Run the paper's comparisons from a config file (CIFAR-10 reproduction).")
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("run")
def run(config: Annotated[Path, typer.Argument(help="Experiment YAML (see experiments/cifar10_small.yaml).")],
        out: Annotated[Optional[Path], typer.Option("--out", help="Output directory (default: runs/<name>).")] = None,
        device: Device = "auto",
        quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False) -> None:
    """Train the classifier, clusters, experts and router of CONFIG, evaluate every ensemble, write results."""
    from hddm_p2p.experiments import load_config, run_experiment
    from hddm_p2p.experiments.runner import FILES

    cfg = load_config(config)
    out = out or Path("runs") / cfg.name
    res = run_experiment(cfg, out, device, console=err_console, progress=not quiet)
    done = sum(r["status"] == "ok" for r in res["ensembles"])
    console.print(f"{done}/{len(res['ensembles'])} configurations evaluated in {res['wall_s']:.0f} s → {out}")
    for name in FILES:
        if (out / name).exists():
            console.print(f"  {out / name}")
