"""Content stores behind one interface: ``LocalStore`` (a directory) and ``KuboStore`` (a Kubo daemon).

>>> store = open_store("local")            # $HDDM_HOME/store
>>> cid = store.put_file(Path("model.safetensors"))
>>> store.get_file(cid, Path("copy.safetensors"))   # verified against the CID, atomic
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from hddm_p2p.errors import SpecError
from hddm_p2p.p2p.kubo_client import DEFAULT_API
from hddm_p2p.p2p.store.base import Store
from hddm_p2p.p2p.store.kubo import KuboStore
from hddm_p2p.p2p.store.local import LocalStore

StoreKind = Literal["local", "ipfs"]


def open_store(kind: str = "local", api: str | None = None, *, root: Path | None = None) -> Store:
    """The store named by ``--store``: ``"local"`` (``root`` or ``$HDDM_HOME/store``) or ``"ipfs"``
    (the Kubo RPC API at the multiaddr ``api``, default ``/ip4/127.0.0.1/tcp/5001``)."""
    if kind == "local":
        if api is not None:
            raise SpecError("--ipfs-api only applies to --store ipfs")
        return LocalStore(root)
    if kind == "ipfs":
        return KuboStore(api or DEFAULT_API)
    raise SpecError(f"unknown store {kind!r}; use --store local or --store ipfs")


__all__ = ["Store", "LocalStore", "KuboStore", "open_store", "StoreKind", "DEFAULT_API"]
