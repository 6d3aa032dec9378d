"""``hddm trust add|list|remove``: the publisher keys whose manifests you accept."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from hddm_p2p.cli.options import Json
from hddm_p2p.cli.p2p_options import row, table
from hddm_p2p.cli.root import console, trust_app
from hddm_p2p.p2p.trust import TrustStore


@trust_app.command("add")
def add(key: Annotated[str, typer.Argument(help="A did:key, or a file with a did or an Ed25519 PEM key.")],
        name: Annotated[Optional[str], typer.Option("--name", help="A label for this publisher.")] = None):
    """Trust a publisher key.

    Example: hddm trust add did:key:z6Mk... --name alice
    """
    t = TrustStore().add(key, name)
    console.print(f"trusted {t.name}: {t.did}", highlight=False, emoji=False)


@trust_app.command("list")
def list_trusted(as_json: Json = False):
    """List trusted publishers."""
    keys = TrustStore().list()
    if as_json:
        print(json.dumps([{"did": k.did, "name": k.name, "added": k.added} for k in keys]))
        return
    t = table("name", "did", "added")
    for k in keys:
        row(t, k.name, k.did, k.added)
    console.print(t)


@trust_app.command("remove")
def remove(key: Annotated[str, typer.Argument(help="The did:key or the name given with `trust add`.")]):
    """Stop trusting a publisher key."""
    t = TrustStore().remove(key)
    console.print(f"removed {t.name}: {t.did}", highlight=False, emoji=False)
