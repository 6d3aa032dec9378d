"""Content stores behind one interface: ``LocalStore`` (a directory) and ``KuboStore`` (a Kubo daemon).

>>> store = open_store("local")            # $HDDM_HOME/store
>>> cid = store.put_file(Path("model.safetensors"))
>>> store.get_file(cid, Path("copy.safetensors"))   # verified against the CID, atomic
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from hddm_p2p.errors import SpecError
from hddm_p2p.p2p.store.base import Store
from hddm_p2p.p2p.store.local import LocalStore

StoreKind = Literal["local", "ipfs"]
DEFAULT_API = "/ip4/127.0.0.1/tcp/5001"


def open_store(kind: str = "local", api: str | None = None, *, root: Path | None = None) -> Store:
    """The store named by ``--store``: ``"local"`` (``root`` or ``$HDDM_HOME/store``) or ``"ipfs"``
    (the Kubo RPC API at the multiaddr ``api``, default ``/ip4/127.0.0.1/tcp/5001``)."""
    if kind == "local":
        if api is not None:
            raise SpecError("--ipfs-api only applies to --store ipfs")
        return LocalStore(root)
    if kind == "ipfs":
        from hddm_p2p.p2p.store.kubo import KuboStore  # imports httpx only when needed

        return KuboStore(api or DEFAULT_API)
    raise SpecError(f"unknown store {kind!r}; use --store local or --store ipfs")


def __getattr__(name: str):
    if name == "KuboStore":
        from hddm_p2p.p2p.store.kubo import KuboStore

        return KuboStore
    raise AttributeError(name)


__all__ = ["Store", "LocalStore", "KuboStore", "open_store", "StoreKind", "DEFAULT_API"]
