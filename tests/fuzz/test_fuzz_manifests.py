"""Manifest parsing, canonicalisation and signature checks under hostile input: only HddmError comes out."""

from __future__ import annotations

import copy
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel

from hddm_p2p.errors import HddmError, ManifestError, SignatureError
from hddm_p2p.p2p.manifests import load_bytes, validate, verify_signature
from hddm_p2p.p2p.rotation import accept_rotation
from hddm_p2p.p2p.signing import (canonical_json, did_from_key, parse_json, public_key_from_did, sign_document,
                                  verify_document)
from hddm_p2p.p2p.threshold import ThresholdPolicy, valid_signers
from tests.fuzz.conftest import EXAMPLES_DIR, FUZZ, json_values, only_hddm_errors

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
EXAMPLES = {name: json.loads((EXAMPLES_DIR / f"{name}.json").read_text()) for name in ("expert", "router", "catalog")}
PATHS = {name: [] for name in EXAMPLES}


def _paths(obj, prefix=()):
    """Every (key path) in a JSON document, for targeted mutation."""
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


for _name, _doc in EXAMPLES.items():
    PATHS[_name] = _paths(_doc)


def _mutate(doc, path, value, delete):
    doc = copy.deepcopy(doc)
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@FUZZ
@given(data=st.binary(max_size=2048))
@example(data=b'{"schema": "hddm.expert/1", "schema": "x"}')
@example(data=b"[" * 5000 + b"]" * 5000)
@example(data=b'{"a": 1' + b"0" * 5000 + b"}")
@example(data=b'\xff\xfe{"schema": NaN}')
def test_arbitrary_bytes_parse_or_fail_cleanly(data):
    result = only_hddm_errors(lambda: load_bytes(data))
    assert isinstance(result, (HddmError, BaseModel))  # a clear error, or a validated model


@FUZZ
@given(kind=st.sampled_from(sorted(EXAMPLES)), pick=st.integers(0, 10**6), value=json_values, delete=st.booleans())
def test_mutated_signed_examples_never_verify_and_fail_cleanly(kind, pick, value, delete):
    original = EXAMPLES[kind]
    path = PATHS[kind][pick % len(PATHS[kind])]
    doc = _mutate(original, path, value, delete)
    result = only_hddm_errors(lambda: verify_signature(doc))
    if not isinstance(result, HddmError):  # accepted: then it must mean exactly the signed document
        assert canonical_json({k: v for k, v in doc.items() if k != "signatures"}) == \
            canonical_json({k: v for k, v in original.items() if k != "signatures"})


@FUZZ
@given(value=json_values)
def test_canonicalisation_gives_bytes_or_manifest_error(value):
    out = only_hddm_errors(lambda: canonical_json({"v": value}))
    if isinstance(out, bytes):  # anything canonicalised re-parses to the same canonical bytes (what verify uses)
        assert canonical_json(parse_json(out)) == out
    else:
        assert isinstance(out, ManifestError)


@FUZZ
@given(doc=st.dictionaries(st.text(max_size=10), json_values, max_size=6), did=st.text(max_size=60),
       sig=st.text(max_size=100) | st.none() | st.integers())
def test_signature_check_fails_cleanly_on_any_document(doc, did, sig):
    doc = {**doc, "signature": sig}
    result = only_hddm_errors(lambda: verify_document(doc, did))
    assert isinstance(result, (SignatureError, ManifestError))  # nothing random verifies


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(["name", "version", "x", "entries"]), json_values, max_size=4))
def test_a_real_signature_verifies_only_its_own_document(doc):
    signed = only_hddm_errors(lambda: sign_document(doc, KEY))
    if isinstance(signed, HddmError):
        return
    verify_document(signed, did_from_key(KEY))
    tampered = {**signed, "x": "tampered" if signed.get("x") != "tampered" else "other"}
    assert isinstance(only_hddm_errors(lambda: verify_document(tampered, did_from_key(KEY))), SignatureError)


@FUZZ
@given(text=st.text(max_size=80) | st.from_regex(r"did:key:z6Mk[1-9A-HJ-NP-Za-km-z]{40,50}", fullmatch=True))
def test_did_parsing_fails_cleanly(text):
    only_hddm_errors(lambda: public_key_from_did(text))


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(["schema", "old", "new", "created", "signature", "junk"]),
                           json_values | st.just("hddm.rotation/1"), max_size=6))
def test_rotation_statements_fail_cleanly(doc):
    data = only_hddm_errors(lambda: canonical_json(doc))
    if isinstance(data, bytes):
        assert isinstance(only_hddm_errors(lambda: accept_rotation(data)), HddmError)


@FUZZ
@given(sigs=json_values, publisher=json_values, signature=json_values)
def test_threshold_counting_never_crashes(sigs, publisher, signature):
    policy = ThresholdPolicy(frozenset({did_from_key(KEY)}), 1)
    doc = {**EXAMPLES["catalog"], "signatures": sigs, "publisher": publisher, "signature": signature}
    result = only_hddm_errors(lambda: valid_signers(doc, policy))
    assert isinstance(result, (set, ManifestError)) and not (isinstance(result, set) and result)


@FUZZ
@given(pick=st.integers(0, 10**6), value=json_values, delete=st.booleans())
def test_lock_file_mutations_validate_or_fail_cleanly(pick, value, delete):
    lock = json.loads((EXAMPLES_DIR / "lock.json").read_text())
    paths = _paths(lock)
    doc = _mutate(lock, paths[pick % len(paths)], value, delete)
    only_hddm_errors(lambda: validate(doc))
    only_hddm_errors(lambda: load_bytes(json.dumps(doc).encode()))
