"""``hddm inspect CID_OR_PATH``: verify a manifest's signature and show what it declares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hddm_p2p.cli.options import Json
from hddm_p2p.cli.p2p_options import row, table, IpfsApi, StoreKind, make_store
from hddm_p2p.cli.root import app, console
from hddm_p2p.errors import TrustError
from hddm_p2p.p2p.cid import cid_of_bytes
from hddm_p2p.p2p.manifests import LOCK_SCHEMA, validate, verify_signature
from hddm_p2p.p2p.signing import canonical_json, parse_json
from hddm_p2p.p2p.trust import TrustStore

_SKIP = {"signature", "artifacts", "entries", "architecture", "members"}


def _trust_status(m, cid: str) -> str:
    try:
        TrustStore().check(m, cid)
    except TrustError as e:
        return f"REFUSED: {e}"
    return "accepted (trusted publisher, not expired, not a downgrade)"


@app.command()
def inspect(ref: Annotated[str, typer.Argument(help="A manifest CID, or a path to a manifest JSON file.")],
            store: StoreKind = "local", ipfs_api: IpfsApi = None, as_json: Json = False):
    """Verify a manifest's signature (error if it fails) and show it, with what the trust policy would say.

    Example: hddm inspect bafkrei... --json
    """
    path = Path(ref)
    data = path.read_bytes() if path.is_file() else make_store(store, ipfs_api).cat(ref)
    doc = parse_json(data)
    cid = cid_of_bytes(canonical_json(doc))  # the CID it has (or would have) when stored as `hddm publish` does
    if doc.get("schema") == LOCK_SCHEMA:  # lock files are local state: validated, not signed
        m, trust, title = validate(doc), "n/a (unsigned lock file)", f"{LOCK_SCHEMA} — valid"
    else:
        m = verify_signature(doc)
        trust, title = _trust_status(m, cid), f"{m.schema_} {m.name} v{m.version} — signature valid"
    if as_json:
        print(json.dumps({"cid": cid, "verified": True, "trust": trust, "manifest": doc}))
        return
    t = table("field", "value", title=title)
    row(t, "cid", cid)
    row(t, "trust", trust)
    for k, v in doc.items():
        if k not in _SKIP:
            row(t, k, json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    if "architecture" in doc:
        arch = doc["architecture"]
        row(t, "architecture", f"{arch['family']} {arch.get('preset') or ''}")
    for a in doc.get("artifacts", []):
        row(t, f"artifact {a['name']}", f"{a['cid']} {a['size']} B sha256 {a['sha256'][:16]}…")
    for e in doc.get("entries", []):
        row(t, f"entry {e.get('name')}", e["cid"])
    for mem in doc.get("members", []):
        row(t, f"{mem['role']} {mem['name']}", mem["manifest_cid"])
    console.print(t)
