"""``hddm demo``: contributors, publishing, assembling and generating, on one machine, from embedded data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hddm_p2p.cli.options import Json
from hddm_p2p.cli.root import app, console


def _summary(res) -> None:
    table = Table("#", "expert", "objective", "schedule", "cluster size", "loss", "weight", "samples run",
                  title="four experts, trained alone, sampled together")
    for i, e in enumerate(res.experts):
        loss = f"{e['final_loss']:.3f}" if e["final_loss"] is not None else "-"
        table.add_row(str(i), e["name"], e["objective"], e["schedule"], str(e["cluster_size"]), loss,
                      f"{e['mean_weight']:.2f}", str(e["rows"]))
    console.print(table)
    cids = Table("expert", "manifest CID (signed, in OUT/home/store)", title="published manifests")
    for e in res.experts:
        cids.add_row(e["name"], e["manifest_cid"])
    console.print(cids)
    stages = Table("stage", "seconds", title="time per stage")
    for name, s in res.timings.items():
        stages.add_row(name, f"{s:.1f}")
    stages.add_row("[bold]total[/]", f"[bold]{sum(res.timings.values()):.1f}[/]")
    console.print(stages)
    acc = res.router.get("accuracy_by_t") or []
    if acc:
        console.print("router held-out accuracy by t: " + "  ".join(f"t={t:.1f}:{a:.2f}" for t, a in acc[::2]),
                      highlight=False)
    if res.recognisable is not None:
        console.print(res.recognisable.summary(), highlight=False)
    out = res.out
    console.print(f"\nlook at [bold]{out / 'grid.png'}[/] (samples) and [bold]{out / 'usage.png'}[/] (which expert ran "
                  f"when); one PNG per sample in {out / 'samples'}/.\nsample again from the same lock:\n"
                  f"  HDDM_HOME={out / 'home'} hddm generate --ensemble {res.lock} --n 16 --mode top-1 "
                  f"--seed 1 --out {out / 'more'}", highlight=False)


@app.command()
def demo(out: Annotated[Path, typer.Option("--out", help="Folder for everything the demo writes "
                                           "(replaced if it holds an earlier demo).")] = Path("demo-out"),
         fast: Annotated[bool, typer.Option("--fast", help="Tiny step counts (seconds, not minutes): for tests; "
                                            "the images will not look like digits.")] = False,
         as_json: Json = False):
    """Run the whole story on this CPU with embedded data only (scikit-learn's 8×8 digits, a local store, no
    daemon, no download): cluster into 4, train two DDPM and two flow-matching experts alone, sign and publish
    them, train a router from their centroids, assemble, and generate 64 samples with top-2 routing.
    Keys, trust and store live in OUT/home, never in your own ~/.hddm.

    Example: hddm demo --out demo-out
    """
    from hddm_p2p.pipeline.demo import DemoConfig, run_demo

    cfg = DemoConfig.fast(out) if fast else DemoConfig(out=out)
    res = run_demo(cfg, console=None if as_json else console)
    if as_json:
        print(json.dumps(res.to_json()))
        return
    _summary(res)
