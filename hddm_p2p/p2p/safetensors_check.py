"""Validate a weights file before anything loads it: safetensors only, with a sane, exact header.

safetensors layout: ``u64 little-endian N`` | ``N bytes of JSON header`` | data region. The header maps
tensor names to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the data region)
plus an optional ``"__metadata__": {str: str}``. A valid file's tensors, sorted by ``begin``, tile the data
region exactly: no gaps, no overlaps, nothing past the end, and ``end - begin = numel * itemsize``.

Pickle-based checkpoints (``.pt``/``.pth``/``.bin``, zip or raw pickle) can execute code on load and are
refused outright.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hddm_p2p.errors import IntegrityError

MAX_HEADER = 100_000_000  # bytes; the reference implementation's limit

# Bits per element of every dtype the safetensors format defines.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # offsets into the data region
    end: int


@dataclass(frozen=True)
class SafetensorsInfo:
    """What the header declares; ``check_safetensors`` guarantees it is consistent with the file."""

    metadata: dict[str, str]
    tensors: tuple[TensorInfo, ...]
    header_size: int
    data_size: int


def _refuse_pickle(path: Path, head: bytes) -> None:
    kind = None
    if head.startswith(b"PK\x03\x04"):
        kind = "a zip archive (a torch .pt/.pth checkpoint?)"
    elif head[:1] == b"\x80" and head[1:2] in bytes(range(2, 6)):
        kind = "a pickle"
    if kind:
        raise IntegrityError(f"{path} is {kind}, not safetensors; pickled weights can run code when loaded and "
                             "are refused: convert them with safetensors.torch.save_file")


def _read_header(path: Path) -> tuple[dict[str, Any], int, int]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        _refuse_pickle(path, head)
        if len(head) < 8:
            raise IntegrityError(f"{path} is {size} bytes: too short to be safetensors")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            raise IntegrityError(f"{path}: header length {n} exceeds the {MAX_HEADER}-byte limit; not a valid safetensors file")
        if 8 + n > size:
            raise IntegrityError(f"{path}: header length {n} runs past the end of the {size}-byte file")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise IntegrityError(f"{path}: the safetensors header is not valid JSON ({e})") from None
    except RecursionError:
        raise IntegrityError(f"{path}: the safetensors header is nested too deeply; not a valid safetensors file") from None
    if not isinstance(header, dict):
        raise IntegrityError(f"{path}: the safetensors header is not a JSON object")
    return header, n, size - 8 - n


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate keys")
    return out


def _tensor(path: Path, name: str, spec: Any) -> TensorInfo:
    where = f"{path}: tensor {name!r}"
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise IntegrityError(f"{where} needs exactly dtype, shape and data_offsets")
    dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if dtype not in DTYPE_BITS:
        raise IntegrityError(f"{where} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise IntegrityError(f"{where} has an invalid shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise IntegrityError(f"{where} has invalid data_offsets {offsets!r}")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
        raise IntegrityError(f"{where}: {dtype}{shape} needs {bits / 8:g} bytes but data_offsets span "
                             f"{offsets[1] - offsets[0]}")
    return TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])


def _check_tiling(path: Path, tensors: list[TensorInfo], data_size: int) -> None:
    cursor = 0
    for t in sorted(tensors, key=lambda t: (t.begin, t.end)):
        if t.begin < cursor:
            raise IntegrityError(f"{path}: tensor {t.name!r} overlaps the previous tensor (offset {t.begin} < {cursor})")
        if t.begin > cursor:
            raise IntegrityError(f"{path}: {t.begin - cursor} unclaimed bytes before tensor {t.name!r}")
        cursor = t.end
    if cursor > data_size:
        raise IntegrityError(f"{path}: tensors end at byte {cursor} of a {data_size}-byte data region (truncated file?)")
    if cursor < data_size:
        raise IntegrityError(f"{path}: {data_size - cursor} trailing bytes after the last tensor")


def check_safetensors(path: str | Path) -> SafetensorsInfo:
    """Validate ``path`` as safetensors (reads only the header); raise ``IntegrityError`` naming the problem."""
    path = Path(path)
    header, header_size, data_size = _read_header(path)
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise IntegrityError(f"{path}: __metadata__ must map strings to strings")
    tensors = [_tensor(path, name, spec) for name, spec in header.items()]
    _check_tiling(path, tensors, data_size)
    return SafetensorsInfo(metadata, tuple(tensors), header_size, data_size)
