"""publish_dir → fetch_manifest on the embedded LocalStore: the happy path and every refusal on the way."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from hddm_p2p.errors import DataError, IntegrityError, ManifestError, SignatureError, TrustError
from hddm_p2p.p2p.cache import Cache
from hddm_p2p.p2p.cid import hash_file
from hddm_p2p.p2p.fetch import fetch_manifest
from hddm_p2p.p2p.keys import KeyStore
from hddm_p2p.p2p.manifests import ExpertManifest, manifest_bytes, sign_manifest, validate
from hddm_p2p.p2p.publish import publish_dir
from hddm_p2p.p2p.signing import parse_json
from hddm_p2p.p2p.trust import TrustStore
from tests.p2p.conftest import make_expert_dir


def _cache_files(home):
    root = home / "cache" / "blobs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_publish_then_fetch_round_trip(home, store, expert_dir, alice):
    res = publish_dir(expert_dir, store, progress=False)
    m, paths = fetch_manifest(store, res.cid, progress=False)
    assert isinstance(m, ExpertManifest) and m.publisher == alice.did and m.version == 1
    assert paths["model.safetensors"].read_bytes() == (expert_dir / "model.safetensors").read_bytes()
    assert hash_file(paths["model.safetensors"]).cid == m.artifact("model.safetensors").cid
    card = paths["README.md"].read_text()
    assert card.startswith("---\nlicense: apache-2.0") and "pipeline_tag: unconditional-image-generation" in card
    assert "| schedule | flow-linear |" in card and res.card_cid == m.artifact("README.md").cid
    assert paths["manifest.json"].read_bytes() == store.cat(res.cid)
    assert TrustStore().highest(alice.did, "expert/cifar-fm-c0") == (1, res.cid)
    assert m.cluster.centroid == [0.25, -0.5, 1.0, 0.0]


def test_version_counts_up_per_key_and_name(home, store, expert_dir):
    assert publish_dir(expert_dir, store, progress=False).manifest.version == 1
    assert publish_dir(expert_dir, store, progress=False).manifest.version == 2
    assert publish_dir(expert_dir, store, version=7, progress=False).manifest.version == 7
    assert publish_dir(expert_dir, store, progress=False).manifest.version == 8
    with pytest.raises(ManifestError, match="versions only grow"):
        publish_dir(expert_dir, store, version=8, progress=False)
    other = make_expert_dir(expert_dir.parent / "other", name="other-expert")
    assert publish_dir(other, store, progress=False).manifest.version == 1


# --- helpers that forge manifests the way an attacker (or a sloppy publisher) would ------------------

def _put_doc(store, doc) -> str:
    from hddm_p2p.p2p.signing import canonical_json

    return store.put_bytes(canonical_json(doc))


def _resigned(store, base: ExpertManifest, key, **changes) -> str:
    """Publish a correctly signed variant of ``base`` with ``changes``; returns its CID."""
    doc = {**base.to_doc(), **changes}
    return store.put_bytes(manifest_bytes(sign_manifest(validate(doc), key)))


@pytest.fixture
def published(home, store, expert_dir):
    return publish_dir(expert_dir, store, progress=False)


def _untouched(home, trust_before):
    assert _cache_files(home) == []
    assert (home / "trust.json").read_text() == trust_before


# --- bad input: each ends in one HddmError, nothing in the cache, trust store unchanged ----------------

def test_tampered_manifest_is_a_signature_error(home, store, published):
    doc = parse_json(store.cat(published.cid))
    doc["time_scale"] = 1000.0
    cid, before = _put_doc(store, doc), (home / "trust.json").read_text()
    with pytest.raises(SignatureError, match="changed after signing"):
        fetch_manifest(store, cid, progress=False)
    _untouched(home, before)


def test_manifest_signed_by_another_key_than_it_names(home, store, published):
    bob = KeyStore().generate("bob")
    TrustStore().add(bob.did, "bob")
    doc = parse_json(store.cat(published.cid))
    doc["publisher"] = bob.did  # alice's signature, bob's name
    cid, before = _put_doc(store, doc), (home / "trust.json").read_text()
    with pytest.raises(SignatureError, match=bob.did):
        fetch_manifest(store, cid, progress=False)
    _untouched(home, before)


@pytest.mark.parametrize("change, message", [
    ({"schema": "hddm.expert/2"}, "unknown manifest schema 'hddm.expert/2'"),
    ({"surprise": 1}, "surprise: unknown field"),
    ({"schedule": "vp-quartic"}, "unknown schedule 'vp-quartic'"),
    ({"prediction": "noise"}, "unknown prediction type 'noise'"),
])
def test_malformed_manifest_is_a_manifest_error(home, store, published, change, message):
    doc = {**parse_json(store.cat(published.cid)), **change}
    cid, before = _put_doc(store, doc), (home / "trust.json").read_text()
    with pytest.raises(ManifestError, match=message):
        fetch_manifest(store, cid, progress=False)
    _untouched(home, before)


def test_missing_field_is_a_manifest_error(home, store, published):
    doc = parse_json(store.cat(published.cid))
    del doc["data_space"]
    with pytest.raises(ManifestError, match="data_space: required field is missing"):
        fetch_manifest(store, _put_doc(store, doc), progress=False)


def test_older_version_is_refused_unless_downgrade_allowed(home, store, published):
    key = KeyStore().load("alice")
    newer = _resigned(store, published.manifest, key, version=5)
    older = _resigned(store, published.manifest, key, version=3)
    fetch_manifest(store, newer, progress=False)
    before = (home / "trust.json").read_text()
    with pytest.raises(TrustError, match="older than v5"):
        fetch_manifest(store, older, progress=False)
    assert (home / "trust.json").read_text() == before
    m, _ = fetch_manifest(store, older, allow_downgrade=True, progress=False)
    assert m.version == 3 and TrustStore().highest(m.publisher, m.slot)[0] == 5  # memory never goes down


def test_same_version_with_other_content_is_refused(home, store, published):
    fetch_manifest(store, published.cid, progress=False)
    fork = _resigned(store, published.manifest, KeyStore().load("alice"), license="mit")
    with pytest.raises(TrustError, match="same version"):
        fetch_manifest(store, fork, progress=False)


def test_expired_manifest_is_refused(home, store, published):
    past = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat(timespec="seconds")
    cid = _resigned(store, published.manifest, KeyStore().load("alice"), version=2, expires=past)
    before = (home / "trust.json").read_text()
    with pytest.raises(TrustError, match="expired"):
        fetch_manifest(store, cid, progress=False)
    _untouched(home, before)
    m, _ = fetch_manifest(store, cid, now=datetime.now(timezone.utc) - timedelta(days=2), progress=False)
    assert m.expires is not None


def test_untrusted_publisher_is_refused_unless_allowed(home, store, published):
    TrustStore().remove("alice")
    before = (home / "trust.json").read_text()
    with pytest.raises(TrustError, match="hddm trust add"):
        fetch_manifest(store, published.cid, progress=False)
    _untouched(home, before)
    m, _ = fetch_manifest(store, published.cid, allow_untrusted=True, progress=False)
    assert m.name == "cifar-fm-c0"


def test_weights_sha256_mismatch_caches_nothing(home, store, published, tmp_path):
    wrong = published.manifest.artifacts[0].model_copy(update={"sha256": "0" * 64})
    cid = _resigned(store, published.manifest, KeyStore().load("alice"), version=2,
                    artifacts=[wrong.to_doc(), published.manifest.artifacts[1].to_doc()])
    before = (home / "trust.json").read_text()
    with pytest.raises(IntegrityError, match="sha256"):
        fetch_manifest(store, cid, progress=False)
    _untouched(home, before)


def test_weights_cid_mismatch_caches_nothing(home, store, published):
    blob = store.blob_path(published.manifest.artifacts[0].cid)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    before = (home / "trust.json").read_text()
    with pytest.raises(IntegrityError):
        fetch_manifest(store, published.cid, progress=False)
    _untouched(home, before)


def test_manifest_bytes_not_matching_cid(home, store, published):
    blob = store.blob_path(published.cid)
    blob.write_bytes(blob.read_bytes().replace(b'"version":1', b'"version":9'))
    with pytest.raises(IntegrityError):
        fetch_manifest(store, published.cid, progress=False)


def _pickle_bytes() -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buf)
    return buf.getvalue()


def test_pickle_offered_as_weights_is_refused_at_publish(home, store, expert_dir):
    (expert_dir / "model.safetensors").write_bytes(_pickle_bytes())
    with pytest.raises(IntegrityError, match="safetensors"):
        publish_dir(expert_dir, store, progress=False)
    assert not (store.root / "blobs").exists() or list((store.root / "blobs").iterdir()) == []


def _overlapping_safetensors() -> bytes:
    import struct

    header = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 12


@pytest.mark.parametrize("payload", ["pickle", "oversized-header", "overlapping"])
def test_non_safetensors_weights_are_refused_at_fetch(home, store, published, tmp_path, payload, monkeypatch):
    import hashlib
    import struct

    data = {"pickle": _pickle_bytes, "overlapping": _overlapping_safetensors,
            "oversized-header": lambda: struct.pack("<Q", 1 << 40) + b"{}"}[payload]()
    path = tmp_path / "evil.bin"
    path.write_bytes(data)
    digest = store.add_file(path)
    evil = {**published.manifest.artifacts[0].to_doc(), "cid": digest.cid, "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data)}
    cid = _resigned(store, published.manifest, KeyStore().load("alice"), version=2,
                    artifacts=[evil, published.manifest.artifacts[1].to_doc()])
    before = (home / "trust.json").read_text()
    seen_in_blobs = []
    real_replace = os.replace

    def spy(src, dst, *a, **kw):  # record every file the cache makes visible
        seen_in_blobs.append(str(dst))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", spy)
    with pytest.raises(IntegrityError, match="safetensors"):
        fetch_manifest(store, cid, progress=False)
    assert not [p for p in seen_in_blobs if "/cache/blobs/" in p]  # never visible, not even briefly
    _untouched(home, before)


def test_overlapping_header_is_refused_at_publish(home, store, expert_dir):
    (expert_dir / "model.safetensors").write_bytes(_overlapping_safetensors())
    with pytest.raises(IntegrityError, match="(?i)overlap"):
        publish_dir(expert_dir, store, progress=False)


def test_publish_rejects_bad_expert_json_before_upload(home, store, expert_dir):
    doc = json.loads((expert_dir / "expert.json").read_text())
    doc["objective"] = "ddpm"  # but prediction says velocity
    (expert_dir / "expert.json").write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match="objective 'ddpm' trains prediction 'epsilon'"):
        publish_dir(expert_dir, store, progress=False)
    assert not (store.root / "blobs").exists()
    with pytest.raises(DataError, match="not a directory"):
        publish_dir(expert_dir / "nope", store, progress=False)


def test_already_cached_artifacts_are_kept_on_failure(home, store, published):
    fetch_manifest(store, published.cid, progress=False)
    files = _cache_files(home)
    notes = store.put_bytes(b"new notes")  # not cached yet; declared with a wrong sha256
    wrong = {**published.manifest.artifacts[1].to_doc(), "name": "NOTES.md", "cid": notes, "size": 9, "sha256": "0" * 64}
    cid = _resigned(store, published.manifest, KeyStore().load("alice"), version=2,
                    artifacts=[a.to_doc() for a in published.manifest.artifacts] + [wrong])
    with pytest.raises(IntegrityError):
        fetch_manifest(store, cid, progress=False)
    assert _cache_files(home) == files and Cache().path_for(published.cid, "manifest.json").exists()


def test_publish_and_fetch_a_router_directory(home, store, published, tmp_path):
    import torch
    from safetensors.torch import save_file

    from hddm_p2p.p2p.manifests import RouterManifest

    d = tmp_path / "router"
    d.mkdir()
    save_file({"w": torch.ones(2, 4)}, str(d / "model.safetensors"), metadata={"hddm.format": "hddm-router/1"})
    router = {"kind": "router", "name": "cifar-router", "architecture": {"family": "mlp", "preset": None,
                                                                          "config": {"hidden": 8}},
              "experts": [published.cid, "sha256:" + "cd" * 32],
              "data_space": {"kind": "pixel", "resolution": 8, "channels": 3, "value_range": [-1.0, 1.0], "vae": None},
              "path": "flow-linear", "feature_extractor": "pixels-8x8", "training": {"steps": 3, "accuracy": 0.5},
              "accuracy_by_t": [[0.5, 0.75]]}
    (d / "router.json").write_text(json.dumps(router))
    res = publish_dir(d, store, progress=False)
    m, paths = fetch_manifest(store, res.cid, progress=False)
    assert isinstance(m, RouterManifest) and m.experts[0] == published.cid and m.accuracy_by_t == [(0.5, 0.75)]
    assert "pipeline_tag: image-classification" in paths["README.md"].read_text()
    (d / "router.json").write_text(json.dumps({**router, "experts": [published.cid, published.cid]}))
    with pytest.raises(ManifestError, match="experts must be distinct"):
        publish_dir(d, store, progress=False)
