"""Where hddm keeps its state: one root, ``$HDDM_HOME`` or ``~/.hddm``.

Keys, the trust store, the download cache and the local content store all live under it, so
setting ``HDDM_HOME`` relocates everything (tests point it at a temporary directory).
"""

from __future__ import annotations

import os
from pathlib import Path

KUBO_VERSION = "v0.42.0"


def hddm_home() -> Path:
    """Root of all state: ``$HDDM_HOME`` if set, else ``~/.hddm``. Not created here."""
    env = os.environ.get("HDDM_HOME")
    return Path(env).expanduser() if env else Path.home() / ".hddm"


def store_dir() -> Path:
    """Default root of the embedded content-addressed store (``LocalStore``)."""
    return hddm_home() / "store"


def cache_dir() -> Path:
    """Default root of the verified download cache (``Cache``)."""
    return hddm_home() / "cache"


def kubo_bin() -> Path:
    """The Kubo binary: ``$HDDM_KUBO_BIN``, else where ``make kubo`` builds it."""
    env = os.environ.get("HDDM_KUBO_BIN")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "hddm-p2p" / "kubo" / f"ipfs-{KUBO_VERSION}"
