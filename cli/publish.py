"""``hddm publish DIR``: sign an expert or router directory and add it (and its model card) to a store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from hddm_p2p.cli.options import Json
from hddm_p2p.cli.p2p_options import AskPassphrase, IpfsApi, KeyName, NoProgress, StoreKind, make_store, passphrase
from hddm_p2p.cli.root import app, console
from hddm_p2p.p2p.catalog import publish_catalog
from hddm_p2p.p2p.publish import publish_dir


@app.command()
def publish(directory: Annotated[Path, typer.Argument(help="Directory with model.safetensors and expert.json "
                                                       "(or router.json).")],
            store: StoreKind = "local", ipfs_api: IpfsApi = None, key: KeyName = None,
            catalog: Annotated[Optional[str], typer.Option("--catalog", help="Also add it to this catalog "
                                                           "(published under your IPNS name).")] = None,
            version: Annotated[Optional[int], typer.Option("--version", min=1, help="Manifest version "
                                                           "(default: 1 + the last you published).")] = None,
            license: Annotated[str, typer.Option("--license", help="SPDX license id of the weights.")] = "apache-2.0",
            ask: AskPassphrase = False, no_progress: NoProgress = False, as_json: Json = False):
    """Sign and publish an expert (or router); prints the manifest CID others fetch.

    Example: hddm publish runs/cifar-fm-c0 --store ipfs --catalog main --json
    """
    st, pp = make_store(store, ipfs_api), passphrase(ask)
    res = publish_dir(directory, st, key_name=key, passphrase=pp, version=version, license=license,
                      progress=not no_progress)
    out = res.to_json()
    if catalog:
        cat = publish_catalog(st, catalog, add=[res.cid], key_name=key, passphrase=pp)
        out["catalog"] = {"name": catalog, "cid": cat.cid, "ipns": cat.ipns, "version": cat.manifest.version}
    if as_json:
        print(json.dumps(out))
        return
    m = res.manifest
    console.print(f"published {m.slot} v{m.version} by {m.publisher}\n  card: {res.card_cid}", highlight=False)
    if catalog:
        console.print(f"  catalog {catalog} v{out['catalog']['version']}: /ipns/{out['catalog']['ipns']}", highlight=False)
    print(res.cid)
