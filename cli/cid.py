"""``hddm cid FILE``: the CID ``ipfs add --only-hash`` prints for a file (unixfs-v1-2025 profile), computed offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hddm_p2p.cli.options import Json
from hddm_p2p.cli.root import app
from hddm_p2p.errors import DataError
from hddm_p2p.p2p.cid import hash_file
from hddm_p2p.p2p.store.base import transfer_progress


@app.command()
def cid(file: Annotated[Path, typer.Argument(help="The file to hash.")], as_json: Json = False) -> None:
    """Print FILE's CID as Kubo would name it (CIDv1, raw leaves, 1 MiB chunks, 1024 links), without a node.

    Example: hddm cid model.safetensors --json   →  {"cid": "bafy...", "sha256": "...", "size": 123}
    """
    if not file.is_file():
        raise DataError(f"{file} is not a file")
    with transfer_progress(f"hash {file.name}", file.stat().st_size, file.stat().st_size > 64 << 20) as advance:
        digest = hash_file(file, on_bytes=advance)
    print(json.dumps({"cid": digest.cid, "sha256": digest.sha256, "size": digest.size}) if as_json else digest.cid)
