"""k-of-n curator signatures on a catalog (TUF threshold signatures): refused with too few valid signatures;
duplicates of one key, invalid signatures and keys outside the policy count for nothing."""

from __future__ import annotations

import pytest

from hddm_p2p.errors import IntegrityError, SignatureError, SpecError, TrustError
from hddm_p2p.p2p.fetch import fetch_manifest
from hddm_p2p.p2p.signing import parse_json
from hddm_p2p.p2p.threshold import ThresholdPolicy, resolve_curated_catalog, valid_signers
from tests.security.conftest import trust_state
from tests.security.simulator import CompromisedNode


@pytest.fixture
def curators(sim):
    return [sim.party(f"curator-{i}") for i in range(3)]


@pytest.fixture
def policy(curators):
    return ThresholdPolicy(frozenset(c.did for c in curators), threshold=2)


def test_two_of_three_curators_accept_a_catalog(hddm_home, sim, curators, policy):
    a, b, _ = curators
    cid = sim.curated_catalog(a, [b], entries=[sim.expert(a)])
    got, catalog = resolve_curated_catalog(sim.origin, cid, policy)
    assert got == cid and catalog.version == 1 and len(catalog.signatures) == 1


def test_one_signature_of_three_is_refused(hddm_home, sim, curators, policy):
    before = trust_state(hddm_home)
    with pytest.raises(TrustError, match="1 valid curator signature"):
        resolve_curated_catalog(sim.origin, sim.curated_catalog(curators[0], []), policy)
    assert trust_state(hddm_home) == before


def test_duplicate_signatures_of_one_key_count_once(hddm_home, sim, curators, policy):
    a, b, _ = curators
    once = parse_json(sim.origin.cat(sim.curated_catalog(a, [b])))["signatures"][0]
    cid = sim.curated_catalog(b, [], extra_sigs=[once, once, once])  # b's signature three times + b as publisher
    with pytest.raises(TrustError, match="1 valid curator signature"):
        resolve_curated_catalog(sim.origin, cid, policy)


def test_invalid_and_outsider_signatures_count_for_nothing(hddm_home, sim, curators, policy):
    a, b, c = curators
    outsider = sim.party("outsider")
    doc = parse_json(sim.origin.cat(sim.curated_catalog(a, [b, c])))
    forged = [{"keyid": s["keyid"], "sig": doc["signature"]} for s in doc["signatures"]]  # a's sig under b's, c's ids
    cid = sim.curated_catalog(a, [outsider], extra_sigs=forged)
    assert valid_signers(parse_json(sim.origin.cat(cid)), policy) == {a.did}
    with pytest.raises(TrustError, match="needs 2 of 3"):
        resolve_curated_catalog(sim.origin, cid, policy)


def test_publisher_outside_the_policy_needs_k_cosigners(hddm_home, sim, curators, policy):
    a, b, c = curators
    editor = sim.party("editor")
    with pytest.raises(TrustError):
        resolve_curated_catalog(sim.origin, sim.curated_catalog(editor, [a]), policy)
    assert resolve_curated_catalog(sim.origin, sim.curated_catalog(editor, [a, c]), policy)[1].publisher == editor.did


def test_changed_catalog_breaks_every_signature(hddm_home, sim, curators, policy):
    a, b, c = curators
    doc = parse_json(sim.origin.cat(sim.curated_catalog(a, [b, c])))
    doc["revoked_keys"] = [sim.party("victim").did]
    from hddm_p2p.p2p.signing import canonical_json

    with pytest.raises(SignatureError, match="does not verify"):
        resolve_curated_catalog(sim.origin, sim.origin.put_bytes(canonical_json(doc)), policy)


def test_curated_revocations_are_adopted_and_rollback_refused(hddm_home, sim, curators, policy):
    a, b, c = curators
    author = sim.party("author")
    sim.trust(author)
    bad = sim.expert(author)
    with CompromisedNode(sim.origin) as node:
        node.names[a.ipns] = sim.curated_catalog(a, [c], version=2, revoked_manifests=[bad])
        resolve_curated_catalog(node.store(), a.ipns, policy)
        with pytest.raises(TrustError, match="was revoked"):
            fetch_manifest(sim.origin, bad, progress=False)
        node.names[a.ipns] = sim.curated_catalog(a, [b, c], version=1)  # replay of an older, well-signed one
        with pytest.raises(TrustError, match="older than v2"):
            resolve_curated_catalog(node.store(), a.ipns, policy)
        node.substitute(node.names[a.ipns], b"{}")
        with pytest.raises(IntegrityError):
            resolve_curated_catalog(node.store(), a.ipns, policy)


@pytest.mark.parametrize("threshold", [0, 4])
def test_policy_threshold_must_fit_the_keys(curators, threshold):
    with pytest.raises(SpecError, match="not between 1 and"):
        ThresholdPolicy(frozenset(c.did for c in curators), threshold)
