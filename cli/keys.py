"""``hddm keys generate|list|export|import``: your Ed25519 publisher identity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from hddm_p2p.cli.options import Json
from hddm_p2p.cli.p2p_options import row, table, AskPassphrase, passphrase
from hddm_p2p.cli.root import console, keys_app
from hddm_p2p.errors import KeyStoreError
from hddm_p2p.p2p._files import atomic_write
from hddm_p2p.p2p.keys import DEFAULT_KEY, KeyInfo, KeyStore
from hddm_p2p.p2p.trust import TrustStore

Name = Annotated[str, typer.Option("--name", help="Key name.")]


def _row(k: KeyInfo) -> dict:
    return {"name": k.name, "did": k.did, "ipns": k.ipns, "encrypted": k.encrypted, "created": k.created}


@keys_app.command("generate")
def generate(name: Name = DEFAULT_KEY, ask: AskPassphrase = False, as_json: Json = False,
             no_trust: Annotated[bool, typer.Option("--no-trust", help="Do not add it to your trust store.")] = False):
    """Create an Ed25519 key (private file mode 0600) and trust it yourself.

    Example: hddm keys generate --name alice --passphrase
    """
    info = KeyStore().generate(name, passphrase(ask, confirm=True))
    if not no_trust:
        TrustStore().add(info.did, name)
    if as_json:
        print(json.dumps(_row(info)))
        return
    console.print(f"created key [bold]{name}[/]\n  did:  {info.did}\n  ipns: {info.ipns}", highlight=False, emoji=False)


@keys_app.command("list")
def list_keys(as_json: Json = False):
    """List your keys with their did:key and IPNS name."""
    rows = [_row(k) for k in KeyStore().list()]
    if as_json:
        print(json.dumps(rows))
        return
    t = table("name", "did", "ipns", "encrypted")
    for r in rows:
        row(t, r["name"], r["did"], r["ipns"], "yes" if r["encrypted"] else "no")
    console.print(t)


@keys_app.command("export")
def export(name: Annotated[str, typer.Argument(help="Key name.")],
           private: Annotated[bool, typer.Option("--private", help="Export the private key (cleartext PKCS8 PEM, "
                                                 "what `ipfs key import -f pem-pkcs8-cleartext` reads).")] = False,
           out: Annotated[Optional[Path], typer.Option("--out", help="File for --private (written mode 0600).")] = None,
           ask: AskPassphrase = False, as_json: Json = False):
    """Print a key's public identity, or write its private key for Kubo.

    Example: hddm keys export alice --private --out alice.pem && ipfs key import alice -f pem-pkcs8-cleartext alice.pem
    """
    ks = KeyStore()
    if not private:
        info = ks.info(name)
        print(json.dumps(_row(info)) if as_json else info.did)
        return
    if out is None:
        raise KeyStoreError("--private needs --out FILE (a private key is never printed)")
    if out.exists():
        raise KeyStoreError(f"{out} exists; choose another --out")
    atomic_write(out, ks.export_private(name, passphrase(ask)), mode=0o600)
    console.print(f"wrote private key {name!r} to {out} (mode 0600); keep it secret", highlight=False, emoji=False)


@keys_app.command("import")
def import_key(file: Annotated[Path, typer.Argument(help="PKCS8 PEM/DER or libp2p-protobuf (ipfs key export) file.")],
               name: Name = DEFAULT_KEY, ask: AskPassphrase = False, as_json: Json = False):
    """Import a private key (e.g. one exported from Kubo); --passphrase decrypts it and encrypts the stored copy.

    Example: hddm keys import alice.pem --name alice
    """
    pp = passphrase(ask)
    info = KeyStore().import_key(file.read_bytes(), name, pp, pp)
    print(json.dumps(_row(info)) if as_json else f"imported {name}: {info.did}")
