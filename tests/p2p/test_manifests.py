"""Manifest models: strictness, signatures over RFC 8785 JSON, schema drift, signed examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hddm_p2p.errors import ManifestError, SignatureError
from hddm_p2p.p2p.manifests import (EnsembleLock, ExpertManifest, load_bytes, manifest_bytes, sign_manifest, validate,
                                    verify_signature)
from hddm_p2p.p2p.manifests.schemas import json_schemas, render
from hddm_p2p.p2p.signing import canonical_json, did_from_key, parse_json
from tests.p2p.conftest import expert_description

ROOT = Path(__file__).resolve().parents[2] / "manifests"
KEY = Ed25519PrivateKey.generate()


def expert_doc(**changes) -> dict:
    desc = expert_description()
    desc.pop("kind")
    doc = {"schema": "hddm.expert/1", **desc, "version": 1, "created": "2026-01-01T00:00:00Z",
           "publisher": did_from_key(KEY), "license": "apache-2.0",
           "artifacts": [{"name": "model.safetensors", "cid": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
                          "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "size": 0,
                          "media_type": "application/x-safetensors"}]}
    doc.update(changes)
    return doc


def test_sign_verify_round_trip_and_bytes_are_canonical():
    signed = sign_manifest(validate(expert_doc()), KEY)
    data = manifest_bytes(signed)
    assert data == canonical_json(json.loads(data))  # stored bytes are already RFC 8785
    assert verify_signature(parse_json(data)) == signed
    assert load_bytes(data).artifacts[0].import_.profile == "unixfs-v1-2025"
    # key order and whitespace do not matter: the signature covers the canonical form
    pretty = json.dumps(dict(reversed(list(parse_json(data).items()))), indent=3).encode()
    assert verify_signature(parse_json(pretty)) == signed


@settings(max_examples=25, deadline=None)
@given(field=st.sampled_from(["name", "time_scale", "license", "version", "created"]), seed=st.integers(0, 10**6))
def test_any_signed_field_change_breaks_the_signature(field, seed):
    doc = sign_manifest(validate(expert_doc()), KEY).to_doc()
    doc[field] = {"name": f"other-{seed}", "time_scale": 1.0 + (seed + 1) / 1e7, "license": f"mit-{seed}",
                  "version": 2 + seed, "created": "2027-01-01T00:00:00Z"}[field]
    with pytest.raises(SignatureError):
        verify_signature(doc)


def test_signed_by_another_key_or_unsigned():
    other = Ed25519PrivateKey.generate()
    with pytest.raises(ManifestError, match="being signed by"):
        sign_manifest(validate(expert_doc()), other)
    doc = sign_manifest(validate(expert_doc(publisher=did_from_key(other))), other).to_doc()
    doc["publisher"] = did_from_key(KEY)
    with pytest.raises(SignatureError, match="different key"):
        verify_signature(doc)
    with pytest.raises(SignatureError, match="no signature"):
        verify_signature(expert_doc())


@pytest.mark.parametrize("change, message", [
    ({"schema": "hddm.expert/2"}, "unknown manifest schema 'hddm.expert/2'"),
    ({"schema": None}, "no 'schema' field"),
    ({"extra": True}, "extra: unknown field"),
    ({"version": 0}, "version: Input should be greater than or equal to 1"),
    ({"version": "1"}, "version: Input should be a valid integer"),
    ({"created": "2026-01-01T00:00:00"}, "created: Input should have timezone info"),
    ({"publisher": "did:web:example.com"}, "publisher: String should match pattern"),
    ({"time_scale": 0}, "time_scale: Input should be greater than 0"),
    ({"schedule": "vp-quartic"}, "unknown schedule 'vp-quartic'"),
    ({"objective": "ddpm"}, "objective 'ddpm' trains prediction 'epsilon'"),
    ({"artifacts": []}, "artifacts: List should have at least 1 item"),
])
def test_invalid_documents_are_one_line_manifest_errors(change, message):
    with pytest.raises(ManifestError, match=message) as e:
        validate(expert_doc(**change))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("path, value, message", [
    (("data_space", "kind"), "latent", "latent data space needs a vae"),
    (("data_space", "value_range"), [1.0, -1.0], "low < high"),
    (("conditioning", "kind"), "class", "num_classes is required"),
    (("conditioning", "kind"), "text", "text_encoder is required"),
    (("cluster", "feature_dim"), 5, "centroid has 4 values but feature_dim is 5"),
    (("training", "loss_curve"), [1, 2], "training.loss_curve: unknown field"),
    (("artifacts", 0, "import"), {"chunker": "size-262144"}, "chunker: Input should be 'size-1048576'"),
])
def test_nested_rules(path, value, message):
    doc = expert_doc()
    target = doc
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    with pytest.raises(ManifestError, match=message):
        validate(doc)


def test_missing_field_and_duplicate_keys_and_non_finite():
    doc = expert_doc()
    del doc["training"]
    with pytest.raises(ManifestError, match="training: required field is missing"):
        validate(doc)
    with pytest.raises(ManifestError, match="duplicate key 'name'"):
        parse_json(b'{"name": "a", "name": "b"}')
    with pytest.raises(ManifestError, match="NaN"):
        parse_json(b'{"x": NaN}')
    with pytest.raises(ManifestError, match="JSON object"):
        parse_json(b"[1, 2]")


def test_models_are_frozen():
    m = validate(expert_doc())
    with pytest.raises(Exception):
        m.version = 5  # type: ignore[misc]


def test_latent_and_text_conditioned_expert():
    doc = expert_doc(data_space={"kind": "latent", "resolution": 32, "channels": 4, "value_range": [-20, 20],
                                 "vae": {"id": "stabilityai/sd-vae-ft-mse", "scaling_factor": 0.18215,
                                         "image_resolution": 256}},
                     conditioning={"kind": "text", "num_classes": None, "class_names": None,
                                   "text_encoder": {"id": "openai/clip-vit-base-patch32", "width": 512, "max_tokens": 77}})
    m = validate(doc)
    assert isinstance(m, ExpertManifest) and m.data_space.vae.scaling_factor == 0.18215


def test_schemas_do_not_drift():
    generated = json_schemas()
    on_disk = {p.name for p in ROOT.glob("*.schema.json")}
    assert on_disk == set(generated), "run: python scripts/gen_schemas.py"
    for name, schema in generated.items():
        assert (ROOT / name).read_text() == render(schema), f"{name} drifted; run: python scripts/gen_schemas.py"
    assert "import" in json.dumps(generated["expert-1.schema.json"]) and \
        generated["expert-1.schema.json"]["additionalProperties"] is False


@pytest.mark.parametrize("name", ["expert.json", "router.json", "catalog.json"])
def test_signed_examples_validate_and_verify(name):
    m = verify_signature(parse_json((ROOT / "examples" / name).read_bytes()))
    assert m.schema_ == f"hddm.{name.removesuffix('.json')}/1"


def test_lock_example_pins_the_expert_example():
    lock = validate(parse_json((ROOT / "examples" / "lock.json").read_bytes()))
    expert = (ROOT / "examples" / "expert.json").read_bytes()
    from hddm_p2p.p2p.cid import cid_of_bytes

    assert isinstance(lock, EnsembleLock) and lock.members[0].manifest_cid == cid_of_bytes(canonical_json(json.loads(expert)))
    with pytest.raises(ManifestError, match="needs manifest_cid"):
        validate({**lock.to_doc(), "router": {"kind": "cid", "params": {}}})


@settings(max_examples=30, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32))
def test_did_and_ipns_round_trip_for_any_key(seed):
    from hddm_p2p.p2p.signing import ipns_name, public_bytes, public_key_from_did

    key = Ed25519PrivateKey.from_private_bytes(seed)
    did = did_from_key(key)
    assert did_from_key(public_key_from_did(did)) == did and public_bytes(public_key_from_did(did)) == public_bytes(key)
    assert ipns_name(did) == ipns_name(key) and ipns_name(did).startswith("k51qzi5uqu5d")


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**53 + 1, 2**53 - 1) | st.text(max_size=8)
                           | st.floats(allow_nan=False, allow_infinity=False),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                           max_leaves=12)


@settings(max_examples=60, deadline=None)
@example(doc={"": 9007199254740992.0})  # 2^53 as a float: canonical "9007199254740992" must read back as a float
@given(doc=st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_canonical_json_is_a_fixed_point(doc):
    once = canonical_json(doc)
    assert canonical_json(parse_json(once)) == once  # what verify re-canonicalises is what was signed
