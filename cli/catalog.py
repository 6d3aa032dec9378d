"""``hddm catalog publish|show``: signed lists of manifests under your IPNS name."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from hddm_p2p.cli.options import Json
from hddm_p2p.cli.p2p_options import (row, table, AllowDowngrade, AllowUntrusted, AskPassphrase, IpfsApi, KeyName, StoreKind,
                                      make_store, passphrase)
from hddm_p2p.cli.root import catalog_app, console
from hddm_p2p.p2p.catalog import publish_catalog, resolve_catalog

@catalog_app.command("publish")
def publish(name: Annotated[str, typer.Argument(help="Catalog name.")],
            expert: Annotated[Optional[list[str]], typer.Option("--expert", help="Manifest CID to list (repeatable).")] = None,
            revoke: Annotated[Optional[list[str]], typer.Option("--revoke", help="Manifest CID to revoke (repeatable).")] = None,
            revoke_key: Annotated[Optional[list[str]], typer.Option("--revoke-key", help="did:key to revoke (repeatable).")] = None,
            store: StoreKind = "local", ipfs_api: IpfsApi = None, key: KeyName = None, ask: AskPassphrase = False,
            as_json: Json = False):
    """Sign the next version of a catalog (previous entries + --expert − --revoke) and publish it under your IPNS name.

    Example: hddm catalog publish main --expert bafkrei... --store ipfs
    """
    res = publish_catalog(make_store(store, ipfs_api), name, add=expert or [], revoke=revoke or [],
                          revoke_keys=revoke_key or [], key_name=key, passphrase=passphrase(ask))
    if as_json:
        print(json.dumps({"cid": res.cid, "ipns": res.ipns, "version": res.manifest.version,
                          "entries": [e.cid for e in res.manifest.entries]}))
        return
    console.print(f"catalog {name} v{res.manifest.version}: {len(res.manifest.entries)} entries\n"
                  f"  /ipns/{res.ipns}\n  /ipfs/{res.cid}", highlight=False, emoji=False)


@catalog_app.command("show")
def show(ref: Annotated[str, typer.Argument(help="IPNS name (k51...) or catalog CID.")],
         store: StoreKind = "local", ipfs_api: IpfsApi = None, allow_untrusted: AllowUntrusted = False,
         allow_downgrade: AllowDowngrade = False, as_json: Json = False):
    """Resolve, verify and list a catalog (entries are fetched and verified by `hddm fetch`).

    Example: hddm catalog show k51qzi5uqu5d... --store ipfs
    """
    cid, m = resolve_catalog(make_store(store, ipfs_api), ref, allow_untrusted=allow_untrusted,
                             allow_downgrade=allow_downgrade)
    if as_json:
        print(json.dumps({"cid": cid, "catalog": m.to_doc()}))
        return
    t = table("kind", "name", "manifest cid", title=f"catalog {m.name} v{m.version} by {m.publisher} (verified)")
    for e in m.entries:
        row(t, e.kind or "?", e.name or "?", e.cid)
    for c in m.revoked_manifests:
        row(t, "revoked", "", c)
    console.print(t)
