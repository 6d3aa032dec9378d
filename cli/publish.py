"""``hddm publish DIR``: sign an expert or router directory and add it (and its model card) to a store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from hddm_p2p.cli.options import Json
from hddm_p2p.cli.p2p_options import AskPassphrase, IpfsApi, KeyName, NoProgress, StoreKind, make_store, passphrase
from hddm_p2p.cli.root import app, console
from hddm_p2p.errors import SpecError
from hddm_p2p.p2p.catalog import publish_catalog
from hddm_p2p.p2p.cluster_client import ClusterClient
from hddm_p2p.p2p.publish import publish_dir
from hddm_p2p.p2p.replicate import check_pin_service, check_replication, cluster_peers, pin_remote, replicate_cluster
from hddm_p2p.p2p.store import Store

PinService = Annotated[Optional[str], typer.Option("--pin-service", help="Also pin on this remote pinning service "
                                                   "(IPFS Pinning Service API) known to the Kubo node "
                                                   "(`ipfs pin remote service add`); needs --store ipfs.")]
Cluster = Annotated[Optional[str], typer.Option("--cluster", help="Also pin on the IPFS Cluster whose REST API is "
                                                "at this multiaddr, e.g. /ip4/127.0.0.1/tcp/9094; needs --store ipfs.")]
Replication = Annotated[tuple[int, int], typer.Option("--replication", help="Cluster replication factor MIN MAX.")]


@app.command()
def publish(directory: Annotated[Path, typer.Argument(help="Directory with model.safetensors and expert.json "
                                                       "(or router.json).")],
            store: StoreKind = "local", ipfs_api: IpfsApi = None, key: KeyName = None,
            catalog: Annotated[Optional[str], typer.Option("--catalog", help="Also add it to this catalog "
                                                           "(published under your IPNS name).")] = None,
            version: Annotated[Optional[int], typer.Option("--version", min=1, help="Manifest version "
                                                           "(default: 1 + the last you published).")] = None,
            license: Annotated[str, typer.Option("--license", help="SPDX license id of the weights.")] = "apache-2.0",
            pin_service: PinService = None, cluster: Cluster = None, replication: Replication = (2, 2),
            ask: AskPassphrase = False, no_progress: NoProgress = False, as_json: Json = False):
    """Sign and publish an expert (or router); prints the manifest CID others fetch.

    Example: hddm publish runs/cifar-fm-c0 --store ipfs --catalog main --cluster /ip4/127.0.0.1/tcp/9094 --json
    """
    st, pp = make_store(store, ipfs_api), passphrase(ask)
    _check_availability(st, pin_service, cluster, replication)  # before anything is published
    res = publish_dir(directory, st, key_name=key, passphrase=pp, version=version, license=license,
                      progress=not no_progress)
    out = res.to_json()
    out.update(_replicate(st, [a.cid for a in res.manifest.artifacts] + [res.cid], res.manifest.name,
                          pin_service, cluster, replication, quiet=as_json))
    if catalog:
        cat = publish_catalog(st, catalog, add=[res.cid], key_name=key, passphrase=pp)
        out["catalog"] = {"name": catalog, "cid": cat.cid, "ipns": cat.ipns, "version": cat.manifest.version}
    if as_json:
        print(json.dumps(out))
        return
    m = res.manifest
    console.print(f"published {m.slot} v{m.version} by {m.publisher}\n  card: {res.card_cid}", highlight=False, emoji=False)
    if catalog:
        console.print(f"  catalog {catalog} v{out['catalog']['version']}: /ipns/{out['catalog']['ipns']}", highlight=False, emoji=False)
    print(res.cid)


def _check_availability(st: Store, pin_service: str | None, cluster: str | None, replication: tuple[int, int]) -> None:
    if (pin_service or cluster) and st.kind != "ipfs":
        raise SpecError("--pin-service and --cluster pin content that is on IPFS; add --store ipfs")
    if pin_service:
        check_pin_service(st.client, pin_service)
    if cluster:
        with ClusterClient(cluster) as c:
            cluster_peers(c, check_replication(replication)[0])


def _replicate(st: Store, cids: list[str], name: str, pin_service: str | None, cluster: str | None,
               replication: tuple[int, int], *, quiet: bool) -> dict:
    out: dict = {}
    if pin_service:
        pin_remote(st.client, cids, pin_service, name=name)
        out["pin_service"] = {"name": pin_service, "pinned": cids}
    if cluster:
        report = replicate_cluster(cids, cluster, replication=replication, name=name)
        out["cluster"] = report.to_json()
        if not quiet:
            for peer in report.down:
                console.print(f"[yellow]warning:[/] cluster peer {peer} is down; pinned without it", highlight=False, emoji=False)
            console.print(f"  cluster: pinned on {', '.join(report.pinned_on[cids[-1]])}", highlight=False, emoji=False)
    return out
