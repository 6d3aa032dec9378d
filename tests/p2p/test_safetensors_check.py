"""check_safetensors: real files pass; pickles, zips and every malformed header are refused by name."""

from __future__ import annotations

import json
import pickle
import struct
import zipfile

import numpy as np
import pytest
from safetensors.numpy import save_file

from hddm_p2p.errors import IntegrityError
from hddm_p2p.p2p.safetensors_check import MAX_HEADER, check_safetensors


def write_raw(path, header: dict, data: bytes, *, length: int | None = None):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def good_header():
    return {"__metadata__": {"hddm.format": "hddm-expert/1"},
            "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
            "b": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 32]}}


def test_a_real_file_passes(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": np.zeros((3, 5), np.float32), "b": np.ones(7, np.int64), "e": np.zeros((0, 2), np.float16)},
              str(path), metadata={"hddm.format": "hddm-expert/1"})
    info = check_safetensors(path)
    assert info.metadata == {"hddm.format": "hddm-expert/1"}
    assert {t.name: t.shape for t in info.tensors} == {"w": (3, 5), "b": (7,), "e": (0, 2)}


def test_handwritten_good_file_passes(tmp_path):
    assert len(check_safetensors(write_raw(tmp_path / "m", good_header(), bytes(32))).tensors) == 2


def test_pickle_and_zip_are_refused(tmp_path):
    p = tmp_path / "model.pt"
    p.write_bytes(pickle.dumps({"w": [1, 2, 3]}, protocol=4))
    with pytest.raises(IntegrityError, match="is a pickle"):
        check_safetensors(p)
    z = tmp_path / "model.pth"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(IntegrityError, match="zip archive"):
        check_safetensors(z)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda h: h["b"].update(data_offsets=[16, 24]), "overlaps"),
    (lambda h: h["b"].update(data_offsets=[28, 36]), "unclaimed bytes"),
    (lambda h: h["b"].update(dtype="F17"), "unknown dtype"),
    (lambda h: h["b"].update(shape=[5]), "needs 10 bytes"),
    (lambda h: h["b"].update(shape=[-4]), "invalid shape"),
    (lambda h: h["b"].update(data_offsets=[32, 24]), "invalid data_offsets"),
    (lambda h: h["b"].update(extra=1), "exactly dtype"),
    (lambda h: h.update(__metadata__={"x": 1}), "__metadata__"),
])
def test_bad_headers_are_named(tmp_path, mutate, message):
    header = good_header()
    mutate(header)
    with pytest.raises(IntegrityError, match=message):
        check_safetensors(write_raw(tmp_path / "m", header, bytes(32)))


def test_data_region_must_be_covered_exactly(tmp_path):
    with pytest.raises(IntegrityError, match="trailing bytes"):
        check_safetensors(write_raw(tmp_path / "m", good_header(), bytes(40)))
    with pytest.raises(IntegrityError, match="truncated"):
        check_safetensors(write_raw(tmp_path / "m", good_header(), bytes(30)))


def test_header_length_limits(tmp_path):
    with pytest.raises(IntegrityError, match="exceeds"):
        check_safetensors(write_raw(tmp_path / "m", good_header(), bytes(32), length=MAX_HEADER + 1))
    with pytest.raises(IntegrityError, match="past the end"):
        check_safetensors(write_raw(tmp_path / "m", good_header(), bytes(32), length=10_000))
    (tmp_path / "short").write_bytes(b"\x01\x02")
    with pytest.raises(IntegrityError, match="too short"):
        check_safetensors(tmp_path / "short")


def test_invalid_json_and_duplicates(tmp_path):
    raw = b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {}}'
    (tmp_path / "dup").write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(4))
    with pytest.raises(IntegrityError, match="not valid JSON"):
        check_safetensors(tmp_path / "dup")
    (tmp_path / "junk").write_bytes(struct.pack("<Q", 5) + b"\xff\xfe{{{" + bytes(4))
    with pytest.raises(IntegrityError, match="not valid JSON"):
        check_safetensors(tmp_path / "junk")
    (tmp_path / "list").write_bytes(struct.pack("<Q", 2) + b"[]")
    with pytest.raises(IntegrityError, match="not a JSON object"):
        check_safetensors(tmp_path / "list")
