"""Atomic small-file writes for the state under ``$HDDM_HOME`` (keys, trust store, version memory, names)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hddm_p2p.errors import HddmError


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory + ``os.replace``: readers see old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # before any byte is written, so a secret is never readable by others
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any, mode: int = 0o644) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), mode)


def read_json(path: Path, default: Any, error: type[HddmError] = HddmError) -> Any:
    """The JSON in ``path``, or ``default`` if the file does not exist; ``error`` if it is corrupt."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path} is corrupt ({e}); restore it from a backup or delete it") from None
