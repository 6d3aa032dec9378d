"""The weights gate under hostile files: only IntegrityError comes out, and whatever it accepts the real
safetensors library loads with exactly the declared dtypes and shapes (a differential check)."""

from __future__ import annotations

import json
import math
import struct

from hypothesis import example, given
from hypothesis import strategies as st
from safetensors import safe_open

from hddm_p2p.errors import IntegrityError
from hddm_p2p.p2p.safetensors_check import DTYPE_BITS, SafetensorsInfo, check_safetensors
from tests.fuzz.conftest import FUZZ, json_values, only_hddm_errors

LOADABLE = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "I8": 1, "BOOL": 1, "F64": 8}


def _file(tmp_path, header: bytes, data: bytes, declared: int | None = None):
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(header) if declared is None else declared) + header + data)
    return path


@st.composite
def headers(draw):
    """Mostly-plausible headers: tensors laid out back to back, then perturbed."""
    n = draw(st.integers(0, 4))
    header, cursor = {}, 0
    for i in range(n):
        dtype = draw(st.sampled_from(sorted(LOADABLE)) | st.sampled_from(sorted(DTYPE_BITS)) | st.text(max_size=4))
        shape = draw(st.lists(st.integers(0, 5), max_size=3))
        nbytes = math.prod(shape) * LOADABLE.get(dtype, 1)
        begin = cursor + draw(st.sampled_from([0, 0, 0, 1, -1]))
        end = begin + nbytes + draw(st.sampled_from([0, 0, 0, 1, -1]))
        header[draw(st.text(min_size=1, max_size=6)) + str(i)] = {"dtype": dtype, "shape": shape,
                                                                  "data_offsets": [begin, end]}
        cursor = max(cursor, end)
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=4), st.text(max_size=4) | json_values,
                                                      max_size=2))
    slack = draw(st.sampled_from([0, 0, 1, -1]))
    return header, max(cursor + slack, 0)


@FUZZ
@given(blob=st.binary(max_size=512))
@example(blob=struct.pack("<Q", 2**64 - 1) + b"{}")
@example(blob=struct.pack("<Q", 5000) + b"[" * 2500 + b"]" * 2500)
@example(blob=struct.pack("<Q", 10005) + b'{"a":' + b"1" * 10000 + b"}")
@example(blob=b"\x80\x04\x95" + b"\x00" * 20)  # a pickle
@example(blob=b"PK\x03\x04" + b"\x00" * 40)  # a zip (torch.save)
def test_arbitrary_bytes_are_refused_cleanly(tmp_path, blob):
    path = tmp_path / "w.safetensors"
    path.write_bytes(blob)
    only_hddm_errors(lambda: check_safetensors(path))


@FUZZ
@given(spec=headers(), pad=st.sampled_from([b"", b" ", b"  "]))
@example(spec=({"w": {"dtype": "F32", "shape": [2, 1], "data_offsets": [0, 8]},
                "b": {"dtype": "BF16", "shape": [0], "data_offsets": [8, 8]}}, 8), pad=b" ")
def test_whatever_the_gate_accepts_safetensors_loads(tmp_path, spec, pad):
    header, data_size = spec
    path = _file(tmp_path, json.dumps(header).encode() + pad, bytes(data_size))
    info = only_hddm_errors(lambda: check_safetensors(path))
    if isinstance(info, IntegrityError):
        return
    assert isinstance(info, SafetensorsInfo)
    if any(t.dtype not in LOADABLE for t in info.tensors):
        return  # exotic dtypes (F4, F8...) have no torch equivalent everywhere; the layout was still checked
    with safe_open(str(path), framework="pt") as f:
        for t in info.tensors:
            assert tuple(f.get_tensor(t.name).shape) == t.shape


@FUZZ
@given(header=st.dictionaries(st.text(max_size=6), json_values, max_size=4), data=st.binary(max_size=64),
       declared=st.none() | st.integers(0, 2**64 - 1))
def test_any_json_header_is_refused_or_accepted_cleanly(tmp_path, header, data, declared):
    raw = json.dumps(header).encode()
    only_hddm_errors(lambda: check_safetensors(_file(tmp_path, raw, data, declared)))
