"""``hddm data cluster``: split a dataset into semantic clusters (features → k-means → files + contact sheets)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from hddm_p2p.cli.options import Device, Json, OutDir, Seed
from hddm_p2p.cli.root import console, data_app


@data_app.command("cluster")
def cluster(
    data: Annotated[str, typer.Option("--data", help="Webdataset shard, glob of shards (quote it), or image folder.")],
    k: Annotated[int, typer.Option("--k", help="Number of clusters (one expert each).")],
    out: OutDir,
    features: Annotated[str, typer.Option("--features", help="dinov2 | clip | pixels | timm:<model>[:random] | "
                                          "path to precomputed features (.npz, .safetensors, features dir).")] = "dinov2",
    levels: Annotated[Optional[str], typer.Option("--levels", help="FINE:COARSE for hierarchical k-means "
                                                  "(e.g. 64:8); 'flat' or omitted for flat k-means.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Use only the first N samples.")] = None,
    shard_size: Annotated[int, typer.Option("--shard-size", help="Samples per feature shard (unit of resume).")] = 1024,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per extractor batch.")] = 64,
    seed: Seed = 0,
    device: Device = "cpu",
    as_json: Json = False,
) -> None:
    """Cluster images by their features; rerun the same command to resume an interrupted extraction.

    Example: hddm data cluster --data 'cifar10/train-*.tar.gz' --k 8 --levels 64:8 --features pixels --out clusters

    Under torchrun the processes share the feature extraction: torchrun --nproc_per_node 2 -m hddm_p2p.cli data cluster ...
    """
    from hddm_p2p.cluster import ClusterJob, run_clustering
    from hddm_p2p.train.distributed import device_for, init_distributed, shutdown

    d = init_distributed(device)  # under torchrun: ranks share the feature extraction (see run_clustering)
    try:
        job = ClusterJob(data, out, k, features, levels, seed, device_for(device, d.local_rank), shard_size,
                         batch_size, limit)
        summary = run_clustering(job, progress=not as_json and d.main, dist=d)
    finally:
        shutdown(d)
    if not d.main:
        return
    if as_json:
        print(json.dumps({k: v for k, v in summary.items() if k != "job"}))
        return
    table = Table(title=f"{summary['count']} samples → {summary['k']} clusters "
                        f"({summary['feature_extractor']}, {summary['levels']})")
    table.add_column("cluster", justify="right")
    table.add_column("size", justify="right")
    table.add_column("contact sheet")
    for i, (size, sheet) in enumerate(zip(summary["sizes"], summary["contact_sheets"])):
        table.add_row(str(i), str(size), str(out / sheet))
    console.print(table)
    console.print(f"wrote {out}/assignments.json, centroids.safetensors, summary.json")
