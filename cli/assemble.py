"""``hddm assemble``: fetch and verify published experts, pick or train a router, write a lock file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.table import Table

from hddm_p2p.cli.options import Device, Json, Seed
from hddm_p2p.cli.p2p_options import AllowUntrusted, AskPassphrase, IpfsApi, KeyName, NoProgress, StoreKind, passphrase
from hddm_p2p.cli.root import app, console

Opt = typer.Option


@app.command()
def assemble(
    out: Annotated[Path, Opt("--out", help="Lock file to write (atomically).")] = Path("ensemble.lock.json"),
    experts: Annotated[Optional[List[str]], Opt("--experts", help="Expert manifest CID (repeat the flag, or "
                                                "separate CIDs with commas).")] = None,
    catalog: Annotated[Optional[str], Opt("--catalog", help="A catalog: IPNS name k51… or catalog CID.")] = None,
    directory: Annotated[Optional[Path], Opt("--dir", help="A folder of expert directories (signed with --key and "
                                             "published into the store first) or of signed bundles "
                                             "(manifest.json + artifacts, verified, then added).")] = None,
    router: Annotated[str, Opt("--router", help="train | <router manifest CID> | threshold:TAU | uniform.")] = "uniform",
    data: Annotated[Optional[str], Opt("--data", help="Local images for --router train (shards, glob or folder).")] = None,
    router_steps: Annotated[int, Opt("--router-steps", help="Training steps for --router train.")] = 300,
    router_preset: Annotated[str, Opt("--router-preset", help="Router size for --router train: tiny, DiT-S/2, DiT-B/2.")] = "tiny",
    name: Annotated[Optional[str], Opt("--name", help="A name recorded in the lock.")] = None,
    store: StoreKind = "local", ipfs_api: IpfsApi = None, allow_untrusted: AllowUntrusted = False,
    key: KeyName = None, ask: AskPassphrase = False, seed: Seed = 0, device: Device = "cpu",
    no_progress: NoProgress = False, as_json: Json = False,
):
    """Build an ensemble from published experts: fetch + verify every manifest and file, check that the experts
    can be combined (from their manifests alone), set up the router, and pin it all in a lock file.

    --router train labels your --data with the experts' published centroids and trains a router here;
    a router CID must list exactly these experts; threshold:TAU sends t > TAU to flow-matching experts and
    t ≤ TAU to converted (DDPM, x0, v) ones; uniform weighs all experts equally.

    Example: hddm assemble --experts bafkrei…a --experts bafkrei…b --router train --data digits/ --out ensemble.lock.json
    """
    from hddm_p2p.pipeline.assemble import AssembleConfig, assemble as run

    cids = tuple(c.strip() for v in (experts or []) for c in v.split(",") if c.strip())
    cfg = AssembleConfig(out=out, experts=cids, catalog=catalog, directory=directory, router=router, data=data,
                         store=store, ipfs_api=ipfs_api, allow_untrusted=allow_untrusted, key=key,
                         passphrase=passphrase(ask), name=name, router_steps=router_steps, router_preset=router_preset,
                         seed=seed, device=device, progress=not no_progress)
    res = run(cfg)
    if as_json:
        print(json.dumps(res.to_json()))
        return
    for folder, cid in res.published:
        console.print(f"published {folder} → {cid}", highlight=False)
    table = Table("#", "expert", "objective", "schedule", "prediction", "manifest CID", "publisher",
                  title=f"ensemble of {len(res.manifests)} experts (verified)")
    for i, (m, mem) in enumerate(zip(res.manifests, res.lock.members)):
        table.add_row(str(i), m.name, m.objective, m.schedule, m.prediction, mem.manifest_cid, m.publisher[-10:])
    console.print(table)
    r = res.lock.router
    console.print(f"router: [bold]{r.kind}[/] {json.dumps(r.params) if r.params else ''}"
                  f"{' ' + r.manifest_cid if r.manifest_cid else ''}", highlight=False)
    console.print(f"lock written to [bold]{res.path}[/]; next: hddm generate --ensemble {res.path} --out samples/")
