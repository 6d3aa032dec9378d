"""Catalogs on the embedded store: publish under the key's IPNS-like name, resolve, verify, revoke."""

from __future__ import annotations

import pytest

from hddm_p2p.errors import ManifestError, StoreError, TrustError
from hddm_p2p.p2p.catalog import publish_catalog, resolve_catalog
from hddm_p2p.p2p.fetch import fetch_manifest
from hddm_p2p.p2p.keys import KeyStore
from hddm_p2p.p2p.publish import publish_dir
from hddm_p2p.p2p.signing import parse_json
from hddm_p2p.p2p.trust import TrustStore
from tests.p2p.conftest import make_expert_dir


@pytest.fixture
def two_experts(home, store, tmp_path):
    return [publish_dir(make_expert_dir(tmp_path / f"e{i}", name=f"expert-{i}", seed=i), store, progress=False).cid
            for i in range(2)]


def test_publish_and_resolve_by_ipns_name(home, store, alice, two_experts):
    res = publish_catalog(store, "main", add=two_experts)
    assert res.ipns == alice.ipns and res.manifest.version == 1
    cid, cat = resolve_catalog(store, alice.ipns)
    assert cid == res.cid and [e.cid for e in cat.entries] == sorted(two_experts)
    assert {e.name for e in cat.entries} == {"expert-0", "expert-1"} and {e.kind for e in cat.entries} == {"expert"}
    assert resolve_catalog(store, f"/ipns/{alice.ipns}")[0] == res.cid == resolve_catalog(store, res.cid)[0]


def test_next_version_accumulates_and_revokes(home, store, alice, two_experts):
    publish_catalog(store, "main", add=two_experts[:1])
    res = publish_catalog(store, "main", add=two_experts[1:], revoke=two_experts[:1])
    assert res.manifest.version == 2 and [e.cid for e in res.manifest.entries] == two_experts[1:]
    resolve_catalog(store, alice.ipns)  # trusted publisher: its revocations are adopted
    with pytest.raises(TrustError, match="revoked"):
        fetch_manifest(store, two_experts[0], progress=False)
    fetch_manifest(store, two_experts[1], progress=False)


def test_revoked_key_is_refused(home, store, alice, two_experts):
    mallory = KeyStore().generate("mallory")
    TrustStore().add(mallory.did, "mallory")
    publish_catalog(store, "main", add=two_experts, revoke_keys=[mallory.did], key_name="alice")
    resolve_catalog(store, alice.ipns)
    with pytest.raises(TrustError, match="key was revoked"):
        resolve_catalog(store, publish_catalog(store, "m", key_name="mallory").cid)


def test_catalog_under_a_name_must_be_signed_by_that_name(home, store, alice, two_experts):
    bob = KeyStore().generate("bob")
    TrustStore().add(bob.did)
    bobs = publish_catalog(store, "main", add=two_experts, key_name="bob")
    names = store.root / "names.json"
    names.write_text(names.read_text().replace(bob.ipns, alice.ipns))  # alice's name → bob's catalog
    with pytest.raises(TrustError, match="whose IPNS name differs"):
        resolve_catalog(store, alice.ipns)
    assert resolve_catalog(store, bobs.cid)[1].publisher == bob.did


def test_catalog_rollback_and_bad_refs(home, store, alice, two_experts):
    old = publish_catalog(store, "main", add=two_experts[:1]).cid
    publish_catalog(store, "main", add=two_experts[1:])
    resolve_catalog(store, alice.ipns)
    with pytest.raises(TrustError, match="older than v2"):
        resolve_catalog(store, old)
    with pytest.raises(StoreError, match="no catalog is published"):
        resolve_catalog(store, KeyStore().generate("nobody").ipns)
    with pytest.raises(ManifestError, match="not a catalog"):
        resolve_catalog(store, two_experts[0])
    with pytest.raises(ManifestError, match="catalogs list expert and router"):
        publish_catalog(store, "main", add=[old], key_name="alice")


def test_tampered_catalog_entry_list(home, store, alice, two_experts):
    from hddm_p2p.errors import SignatureError
    from hddm_p2p.p2p.signing import canonical_json

    res = publish_catalog(store, "main", add=two_experts)
    doc = parse_json(store.cat(res.cid))
    doc["revoked_manifests"] = []
    doc["entries"] = doc["entries"][:1]
    with pytest.raises(SignatureError):
        resolve_catalog(store, store.put_bytes(canonical_json(doc)))
