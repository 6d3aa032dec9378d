"""Atomic writes for clustering outputs: a temp file in the same directory, then ``os.replace``."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())
