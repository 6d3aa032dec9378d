"""CID parsing and artifact names under hostile strings: a canonical CID or CidError / ManifestError, nothing else."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from hddm_p2p.errors import CidError, HddmError
from hddm_p2p.p2p.cache import Cache
from hddm_p2p.p2p.cid import cid_of_bytes, parse_cid
from tests.fuzz.conftest import FUZZ, only_hddm_errors

REAL = [cid_of_bytes(b""), cid_of_bytes(b"x" * (1 << 20) + b"y"), "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR"]
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567ABCDEFGHIJKLMNOPQRSTUVWXYZ0189-_/+=. \n\x00é"


@st.composite
def near_cids(draw):
    """A real CID with a few characters replaced, inserted or dropped."""
    s = list(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(s)))
        op = draw(st.sampled_from(["set", "insert", "drop"]))
        c = draw(st.sampled_from(ALPHABET))
        if op == "insert" or i == len(s):
            s.insert(i, c)
        elif op == "set":
            s[i] = c
        else:
            del s[i]
    return "".join(s)


@FUZZ
@given(text=st.text(max_size=120) | near_cids() | st.sampled_from(REAL))
@example(text="z" + "1" * 5000)
@example(text="bafkqaaa")  # identity-hash CID: valid, but not a kind this project accepts
@example(text="f01551220" + "00" * 32)
def test_parse_cid_is_canonical_or_cid_error(text):
    out = only_hddm_errors(lambda: parse_cid(text))
    if isinstance(out, HddmError):
        assert isinstance(out, CidError)
        return
    assert out.startswith("b") and parse_cid(out) == out  # idempotent, CIDv1 base32


@FUZZ
@given(name=st.text(max_size=40), cid=st.sampled_from(REAL[:2]))
@example(name="../../etc/passwd", cid=REAL[0])
@example(name="..", cid=REAL[0])
def test_artifact_names_never_escape_the_cache(tmp_path, name, cid):
    cache = Cache(tmp_path / "cache")
    out = only_hddm_errors(lambda: cache.path_for(cid, name))
    if not isinstance(out, HddmError):
        assert out.parent == (tmp_path / "cache" / "blobs" / parse_cid(cid)) and out.name == name
