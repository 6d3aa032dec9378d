"""``hddm fetch CID``: download a manifest and its files into the cache, verifying everything."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hddm_p2p.cli.options import Json
from hddm_p2p.cli.p2p_options import row, table, AllowDowngrade, AllowUntrusted, IpfsApi, NoProgress, StoreKind, make_store
from hddm_p2p.cli.root import app, console
from hddm_p2p.p2p.fetch import fetch_manifest


@app.command()
def fetch(cid: Annotated[str, typer.Argument(help="Manifest CID (from `hddm publish` or a catalog).")],
          store: StoreKind = "local", ipfs_api: IpfsApi = None, allow_untrusted: AllowUntrusted = False,
          allow_downgrade: AllowDowngrade = False, no_progress: NoProgress = False, as_json: Json = False):
    """Fetch and verify a manifest (signature, trust, expiry, version) and its files (size, sha256, CID).

    Example: hddm fetch bafkrei... --store ipfs
    """
    m, paths = fetch_manifest(make_store(store, ipfs_api), cid, allow_untrusted=allow_untrusted,
                              allow_downgrade=allow_downgrade, progress=not no_progress)
    if as_json:
        print(json.dumps({"cid": cid, "name": m.name, "version": m.version, "publisher": m.publisher,
                          "paths": {k: str(v) for k, v in paths.items()}}))
        return
    t = table("file", "path", title=f"{m.slot} v{m.version} (verified)")
    for name, path in paths.items():
        row(t, name, str(path))
    console.print(t)
