"""``hddm train router``: train a router over clusters (assignments) or over published experts (centroids)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from hddm_p2p.cli.options import Device, Json, OutDir, Seed
from hddm_p2p.cli.root import console, train_app


@train_app.command("router")
def router(
    data: Annotated[str, typer.Option("--data", help="Webdataset shard, glob of shards (quote it), or image folder.")],
    out: OutDir,
    assignments: Annotated[Optional[Path], typer.Option("--assignments", help="assignments.json from "
                                                        "`hddm data cluster` (sample key → cluster id).")] = None,
    experts: Annotated[Optional[list[str]], typer.Option("--experts", help="Expert directory or expert manifest "
                       "file; repeat per expert, in router output order. Local data is labelled by their "
                       "centroids.")] = None,
    expert_ids: Annotated[Optional[str], typer.Option("--expert-ids", help="With --assignments: comma-separated "
                          "identities of the experts for clusters 0..K-1 (default cluster:<j>).")] = None,
    preset: Annotated[str, typer.Option("--arch", help="Router preset: tiny, DiT-S/2, DiT-B/2 (≈129M), ...")] = "tiny",
    steps: Annotated[int, typer.Option("--steps")] = 500,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    lr: Annotated[float, typer.Option("--lr")] = 3e-4,
    holdout: Annotated[float, typer.Option("--holdout", help="Fraction held out for accuracy by t.")] = 0.1,
    resolution: Annotated[int, typer.Option("--resolution", help="Image size with --assignments.")] = 32,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Use only the first N samples.")] = None,
    name: Annotated[str, typer.Option("--name")] = "router",
    seed: Seed = 0,
    device: Device = "cpu",
    as_json: Json = False,
) -> None:
    """Train a router p(expert | x_t, t) and report held-out accuracy by noise level.

    Example: hddm train router --data 'cifar10/train-*.tar.gz' --experts exp0 --experts exp1 --out router
    """
    from hddm_p2p.errors import SpecError
    from hddm_p2p.train.router import RouterTrainConfig, train_router_from_assignments, train_router_from_paths

    if (assignments is None) == (not experts):
        raise SpecError("give exactly one of --assignments FILE or --experts DIR_OR_MANIFEST (repeatable)")
    if expert_ids and experts:
        raise SpecError("--expert-ids goes with --assignments; with --experts the ids come from the experts")
    cfg = RouterTrainConfig(preset, steps, batch_size, lr, holdout, seed=seed, resolution=resolution, limit=limit,
                            device=device, name=name)
    if assignments is not None:
        ids = [s.strip() for s in expert_ids.split(",")] if expert_ids else None
        desc = train_router_from_assignments(data, assignments, out, cfg, ids)
    else:
        desc = train_router_from_paths(experts, data, out, cfg)
    if as_json:
        print(json.dumps({"out": str(out), "experts": desc["experts"], "accuracy_by_t": desc["accuracy_by_t"]}))
        return
    tr = desc["training"]
    table = Table(title="router accuracy by t", caption=f"held out: {tr['held_out']}, "
                  f"majority class {tr['majority_rate']:.2f}")
    table.add_column("t", justify="right")
    table.add_column("accuracy", justify="right")
    for t, acc in desc["accuracy_by_t"]:
        table.add_row(f"{t:.1f}", f"{acc:.3f}")
    console.print(table)
    console.print(f"wrote {out}/model.safetensors, router.json, accuracy_by_t.png")
