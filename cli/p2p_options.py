"""Options shared by the publish/fetch/catalog/trust commands, defined once, and the store they open."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from hddm_p2p.p2p.keys import PASSPHRASE_ENV
from hddm_p2p.p2p.store import Store, open_store

StoreKind = Annotated[str, typer.Option("--store", help="Where content lives: local (a directory under "
                                        "$HDDM_HOME, no daemon) or ipfs (a Kubo daemon).")]
IpfsApi = Annotated[Optional[str], typer.Option("--ipfs-api", help="Kubo RPC API multiaddr, e.g. "
                                                "/ip4/127.0.0.1/tcp/5001 (only with --store ipfs).")]
KeyName = Annotated[Optional[str], typer.Option("--key", help="Signing key name (see `hddm keys list`).")]
AskPassphrase = Annotated[bool, typer.Option("--passphrase", help=f"Prompt for the key passphrase "
                                             f"(or set {PASSPHRASE_ENV}).")]
AllowUntrusted = Annotated[bool, typer.Option("--allow-untrusted", help="Accept publishers not in the trust store.")]
AllowDowngrade = Annotated[bool, typer.Option("--allow-downgrade",
                                              help="Accept a version older than one already seen.")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="Hide progress bars.")]


def make_store(kind: str, api: str | None) -> Store:
    return open_store(kind, api)


def passphrase(ask: bool, confirm: bool = False) -> str | None:
    """The passphrase: prompted when ``--passphrase`` is given, else ``$HDDM_KEY_PASSPHRASE`` (or none)."""
    if ask:
        return typer.prompt("key passphrase", hide_input=True, confirmation_prompt=confirm)
    return os.environ.get(PASSPHRASE_ENV) or None


def table(*columns: str, title: str | None = None) -> Table:
    """A table whose cells wrap instead of truncating CIDs and DIDs."""
    t = Table(title=Text(title) if title else None)
    for c in columns:
        t.add_column(c, overflow="fold")
    return t


def row(t: Table, *cells: object) -> None:
    """Add cells as plain text: a did:key must not turn into an emoji (``:key:``) or markup."""
    t.add_row(*(Text(str(c)) for c in cells))
