"""The gate every weights file passes before it is accepted: a well-formed safetensors header, never pickle.

Delegates to ``hddm_p2p.p2p.safetensors_check`` (owned by the transport); until that lands, a minimal
header check stands in: the 8-byte little-endian header length must fit the file and the header must be a
JSON object — a pickle (``\\x80`` protocol byte) or zip (``PK``) file fails this at once.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from hddm_p2p.errors import IntegrityError

SAFETENSORS_MEDIA_TYPE = "application/x-safetensors"
_MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


def _minimal_check(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise IntegrityError(f"{path} is not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or n > size - 8:
            raise IntegrityError(f"{path} is not a safetensors file (header length {n} is oversized); "
                                 "refusing it (pickle checkpoints are never loaded)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            header = None
    if not isinstance(header, dict):
        raise IntegrityError(f"{path} is not a safetensors file (header is not a JSON object)")
    _check_offsets(path, header, size - 8 - n)


def _check_offsets(path: Path, header: dict, data_size: int) -> None:
    """Tensor byte ranges must lie inside the data section and must not overlap."""
    try:
        spans = sorted(tuple(v["data_offsets"]) for k, v in header.items() if k != "__metadata__")
    except (TypeError, KeyError):
        raise IntegrityError(f"{path} is not a safetensors file (a tensor entry has no data_offsets)") from None
    end = 0
    for begin, stop in spans:
        if not (isinstance(begin, int) and isinstance(stop, int)) or begin < end or stop < begin or stop > data_size:
            raise IntegrityError(f"{path}: safetensors header has overlapping or out-of-range tensor offsets "
                                 f"[{begin}, {stop}); refusing it")
        end = stop


def check_weights(path: Path) -> None:
    """IntegrityError unless ``path`` is a safetensors file with a sane header."""
    try:
        from hddm_p2p.p2p import safetensors_check
    except ModuleNotFoundError:
        _minimal_check(Path(path))
        return
    safetensors_check.check_safetensors(Path(path))  # fails loudly if the transport renames it
