"""``hddm announce CID`` / ``hddm listen``: pubsub hints on ``hddm/announce/1``, each verified before it is shown usable."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from hddm_p2p.cli.options import Json
from hddm_p2p.cli.p2p_options import AllowUntrusted, IpfsApi, StoreKind, make_store
from hddm_p2p.cli.root import app, console
from hddm_p2p.p2p.announce import TOPIC, announce as announce_cid, listen as listen_for


@app.command()
def announce(cid: Annotated[str, typer.Argument(help="Manifest CID to announce (published on this node).")],
             store: StoreKind = "ipfs", ipfs_api: IpfsApi = None, as_json: Json = False):
    """Announce a manifest on the pubsub topic hddm/announce/1 (a hint; listeners verify it).

    Example: hddm announce bafkrei... --ipfs-api /ip4/127.0.0.1/tcp/5001
    """
    msg = announce_cid(make_store(store, ipfs_api), cid)
    print(json.dumps(msg.to_doc()) if as_json else f"announced {msg.cid} ({msg.name}) on {TOPIC}")


@app.command()
def listen(store: StoreKind = "ipfs", ipfs_api: IpfsApi = None,
           count: Annotated[Optional[int], typer.Option("--count", min=1, help="Stop after N announcements.")] = None,
           timeout: Annotated[Optional[float], typer.Option("--timeout", min=0, help="Stop after S seconds.")] = None,
           allow_untrusted: AllowUntrusted = False, as_json: Json = False):
    """Listen for announcements; each is fetched and verified, and shown as usable or refused (with the reason).

    Example: hddm listen --count 1 --timeout 60
    """
    for heard in listen_for(make_store(store, ipfs_api), count=count, timeout=timeout, allow_untrusted=allow_untrusted):
        if as_json:
            print(json.dumps({"cid": heard.cid, "usable": heard.usable, "error": heard.error,
                              "name": heard.manifest.name if heard.manifest else None}), flush=True)
        elif heard.usable:
            m = heard.manifest
            console.print(f"[green]usable[/] {heard.cid} {m.slot} v{m.version} by {m.publisher}", highlight=False, emoji=False)
        else:
            console.print(f"[red]refused[/] {heard.cid or '?'}: {heard.error}", highlight=False, emoji=False)
