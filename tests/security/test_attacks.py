"""TUF's classic attacks against the real fetch path: rollback, freeze, mix-and-match, revocation, and a
compromised IPFS node serving other bytes or stale IPNS answers. After every refusal nothing is cached and
the trust store is unchanged."""

from __future__ import annotations

import pytest

from hddm_p2p.errors import IntegrityError, SignatureError, TrustError
from hddm_p2p.p2p.cache import Cache
from hddm_p2p.p2p.catalog import resolve_catalog
from hddm_p2p.p2p.fetch import fetch_manifest
from hddm_p2p.p2p.signing import canonical_json, parse_json
from hddm_p2p.p2p.trust import TrustStore
from tests.security.conftest import cached_files, trust_state
from tests.security.simulator import CompromisedNode, expired


def _refused(home, fn, error, match):
    before_cache, before_trust = cached_files(home), trust_state(home)
    with pytest.raises(error, match=match):
        fn()
    assert cached_files(home) == before_cache and trust_state(home) == before_trust


# --- rollback -------------------------------------------------------------------------------------

def test_rollback_to_an_older_manifest_version_is_refused(hddm_home, sim):
    alice = sim.party("alice")
    sim.trust(alice)
    v1, v2 = sim.expert(alice, version=1, seed=1), sim.expert(alice, version=2, seed=2)
    assert fetch_manifest(sim.origin, v2, progress=False)[0].version == 2
    _refused(hddm_home, lambda: fetch_manifest(sim.origin, v1, progress=False), TrustError, "older than v2")
    assert fetch_manifest(sim.origin, v1, allow_downgrade=True, progress=False)[0].version == 1  # explicit opt-in


def test_same_version_with_other_content_is_refused(hddm_home, sim):
    alice = sim.party("alice")
    sim.trust(alice)
    fetch_manifest(sim.origin, sim.expert(alice, version=3, seed=1), progress=False)
    twin = sim.expert(alice, version=3, seed=2)  # equivocation: two different manifests claim v3
    _refused(hddm_home, lambda: fetch_manifest(sim.origin, twin, progress=False), TrustError, "same version")


def test_compromised_node_replays_an_old_catalog_under_the_ipns_name(hddm_home, sim):
    alice = sim.party("alice")
    sim.trust(alice)
    old, new = sim.catalog(alice, version=1), sim.catalog(alice, version=2)
    with CompromisedNode(sim.origin) as node:
        node.names[alice.ipns] = new
        assert resolve_catalog(node.store(), alice.ipns)[1].version == 2
        node.names[alice.ipns] = old  # the node (or a stale IPNS record) now answers with v1
        _refused(hddm_home, lambda: resolve_catalog(node.store(), alice.ipns), TrustError, "older than v2")


# --- freeze ---------------------------------------------------------------------------------------

def test_expired_manifest_is_refused(hddm_home, sim):
    alice = sim.party("alice")
    sim.trust(alice)
    stale = sim.expert(alice, created=expired(30), expires=expired(1))
    _refused(hddm_home, lambda: fetch_manifest(sim.origin, stale, progress=False), TrustError, "expired on")


def test_frozen_catalog_is_refused_once_it_expires(hddm_home, sim):
    alice = sim.party("alice")
    sim.trust(alice)
    frozen = sim.catalog(alice, version=1, created=expired(30), expires=expired(1))
    with CompromisedNode(sim.origin) as node:
        node.names[alice.ipns] = frozen  # the node keeps serving the last catalog it let through
        _refused(hddm_home, lambda: resolve_catalog(node.store(), alice.ipns), TrustError, "expired on")


# --- mix-and-match --------------------------------------------------------------------------------

def test_manifest_a_served_with_b_weights_is_refused(hddm_home, sim):
    alice = sim.party("alice")
    sim.trust(alice)
    a = sim.expert_doc(alice, name="expert-a", seed=1)
    sim.expert(alice, name="expert-b", seed=2)
    a_cid = sim.put(a, alice)
    b_weights = sim.weights(2)
    with CompromisedNode(sim.origin) as node:
        node.substitute(a["artifacts"][0]["cid"], b_weights)
        _refused(hddm_home, lambda: fetch_manifest(node.store(), a_cid, progress=False), IntegrityError,
                 "hashes to")
        assert not list((hddm_home / "cache" / "partial").glob("*"))  # the bad download is gone too


def test_manifest_a_relabelled_with_b_artifacts_breaks_the_signature(hddm_home, sim):
    alice = sim.party("alice")
    sim.trust(alice)
    a = parse_json(sim.origin.cat(sim.expert(alice, name="expert-a", seed=1)))
    b = parse_json(sim.origin.cat(sim.expert(alice, name="expert-b", seed=2)))
    forged = sim.origin.put_bytes(canonical_json({**a, "artifacts": b["artifacts"]}))  # keeps A's signature
    _refused(hddm_home, lambda: fetch_manifest(sim.origin, forged, progress=False), SignatureError, "does not verify")


def test_node_answers_a_manifest_cid_with_another_manifest(hddm_home, sim):
    alice = sim.party("alice")
    sim.trust(alice)
    a, b = sim.expert(alice, name="expert-a", seed=1), sim.expert(alice, name="expert-b", seed=2)
    with CompromisedNode(sim.origin) as node:
        node.substitute(a, sim.origin.cat(b))  # validly signed, but not what was asked for
        _refused(hddm_home, lambda: fetch_manifest(node.store(), a, progress=False), IntegrityError, "hash")


def test_wrong_sha256_for_a_cached_cid_does_not_evict_the_verified_copy(hddm_home, sim):
    alice, mallory = sim.party("alice"), sim.party("mallory")
    sim.trust(alice, mallory)
    good = sim.expert_doc(alice, seed=1)
    _, paths = fetch_manifest(sim.origin, sim.put(good, alice), progress=False)
    lying = {**good["artifacts"][0], "sha256": "0" * 64}  # same CID, a sha256 that cannot match it
    bad = sim.expert(mallory, name="other", artifacts=[lying])
    with pytest.raises(IntegrityError, match="declares"):
        fetch_manifest(sim.origin, bad, progress=False)
    assert paths["model.safetensors"].is_file()  # alice's verified copy is still there
    Cache().verify(paths["model.safetensors"], good["artifacts"][0]["sha256"])


def test_pickle_declared_as_another_media_type_never_reaches_the_cache(hddm_home, sim):
    import pickle

    alice = sim.party("alice")
    sim.trust(alice)
    payload = pickle.dumps({"w": [1.0, 2.0]}, protocol=4)
    sneaky = sim.expert(alice, artifacts=[sim.artifact(payload, media_type="application/octet-stream")])
    _refused(hddm_home, lambda: fetch_manifest(sim.origin, sneaky, progress=False), IntegrityError, "pickle")


# --- revocation -----------------------------------------------------------------------------------

def test_manifest_revoked_by_a_trusted_catalog_is_refused_even_when_another_catalog_lists_it(hddm_home, sim):
    alice, bob = sim.party("alice"), sim.party("bob")
    sim.trust(alice, bob)
    bad = sim.expert(alice, seed=1)
    sim.point_name(alice, sim.catalog(alice, version=2, revoked_manifests=[bad]))
    resolve_catalog(sim.origin, alice.ipns)
    _, bobs = resolve_catalog(sim.origin, sim.catalog(bob, entries=[bad]))  # a stale listing elsewhere
    assert [e.cid for e in bobs.entries] == [bad]
    _refused(hddm_home, lambda: fetch_manifest(sim.origin, bad, progress=False), TrustError, "was revoked")


def test_revoked_key_is_refused_for_manifests_and_catalogs(hddm_home, sim):
    curator, mallory = sim.party("curator"), sim.party("mallory")
    sim.trust(curator, mallory)
    resolve_catalog(sim.origin, sim.catalog(curator, revoked_keys=[mallory.did]))
    _refused(hddm_home, lambda: fetch_manifest(sim.origin, sim.expert(mallory), progress=False), TrustError,
             "key was revoked")
    _refused(hddm_home, lambda: resolve_catalog(sim.origin, sim.catalog(mallory, version=9)), TrustError,
             "key was revoked")
    _refused(hddm_home, lambda: fetch_manifest(sim.origin, sim.expert(mallory), allow_untrusted=True,
                                               progress=False), TrustError, "key was revoked")


def test_untrusted_catalog_cannot_revoke_or_vouch(hddm_home, sim):
    alice, mallory = sim.party("alice"), sim.party("mallory")
    sim.trust(alice)
    good = sim.expert(alice)
    resolve_catalog(sim.origin, sim.catalog(mallory, revoked_keys=[alice.did], revoked_manifests=[good]),
                    allow_untrusted=True)
    assert fetch_manifest(sim.origin, good, progress=False)[0].publisher == alice.did  # revocations ignored
    listed = sim.expert(mallory)
    resolve_catalog(sim.origin, sim.catalog(mallory, version=2, entries=[listed]), allow_untrusted=True)
    _refused(hddm_home, lambda: fetch_manifest(sim.origin, listed, progress=False), TrustError, "not in your trust")


def test_manifest_signed_by_another_key_than_its_publisher_is_refused(hddm_home, sim):
    alice, mallory = sim.party("alice"), sim.party("mallory")
    sim.trust(alice)
    forged = sim.expert(alice, signer=mallory)  # claims alice, signed by mallory
    _refused(hddm_home, lambda: fetch_manifest(sim.origin, forged, progress=False), SignatureError, "does not verify")
    assert TrustStore().highest(alice.did, "expert/sim-expert") is None
