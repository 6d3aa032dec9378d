"""Key rotation: a new key announced by the old one (hddm.rotation/1), accepted only when the currently trusted
key signed it; after it, manifests the old key signs are refused while earlier ones stay valid."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hddm_p2p.errors import ManifestError, SignatureError, TrustError
from hddm_p2p.p2p.catalog import resolve_catalog
from hddm_p2p.p2p.fetch import fetch_manifest
from hddm_p2p.p2p.rotation import accept_rotation, rotation_bytes, sign_rotation
from hddm_p2p.p2p.signing import parse_json
from hddm_p2p.p2p.trust import TrustStore
from tests.security.conftest import trust_state
from tests.security.simulator import NOW


def _accept(sim, cid):
    return accept_rotation(sim.origin.cat(cid))


def test_rotation_signed_by_the_trusted_key_moves_trust_to_the_new_key(hddm_home, sim):
    old, new = sim.party("alice-2025"), sim.party("alice-2026")
    sim.trust(old)
    before = sim.expert(old, version=1, created=NOW - timedelta(days=2))
    statement = _accept(sim, sim.rotation(old, new, created=NOW - timedelta(days=1)))
    assert (statement.old, statement.new) == (old.did, new.did)
    assert TrustStore().is_trusted(new.did)
    assert fetch_manifest(sim.origin, sim.expert(new, name="next"), progress=False)[0].publisher == new.did
    assert fetch_manifest(sim.origin, before, progress=False)[0].version == 1  # signed before the rotation: valid
    after = sim.expert(old, version=2)  # the retired key keeps signing
    with pytest.raises(TrustError, match="after the key was rotated"):
        fetch_manifest(sim.origin, after, progress=False)
    with pytest.raises(TrustError, match="after the key was rotated"):
        fetch_manifest(sim.origin, after, allow_untrusted=True, progress=False)
    with pytest.raises(TrustError, match="after the key was rotated"):
        resolve_catalog(sim.origin, sim.catalog(old))


def test_rotation_not_signed_by_the_old_key_is_refused(hddm_home, sim):
    old, new, mallory = sim.party("alice"), sim.party("alice-new"), sim.party("mallory")
    sim.trust(old)
    before = trust_state(hddm_home)
    with pytest.raises(SignatureError, match="does not verify"):
        _accept(sim, sim.rotation(old, mallory, signer=mallory))  # claims to come from alice
    with pytest.raises(SignatureError, match="does not verify"):
        _accept(sim, sim.rotation(old, new, signer=new))  # the new key cannot promote itself
    assert trust_state(hddm_home) == before and not TrustStore().is_trusted(mallory.did)


def test_rotation_from_an_untrusted_or_revoked_key_is_refused(hddm_home, sim):
    stranger, friend, curator = sim.party("stranger"), sim.party("friend"), sim.party("curator")
    with pytest.raises(TrustError, match="not in your trust store"):
        _accept(sim, sim.rotation(stranger, friend))
    sim.trust(curator, friend)
    resolve_catalog(sim.origin, sim.catalog(curator, revoked_keys=[friend.did]))
    with pytest.raises(TrustError, match="was revoked"):
        _accept(sim, sim.rotation(friend, sim.party("friend-new")))
    assert not TrustStore().is_trusted(stranger.did)


def test_first_rotation_wins_and_chains_follow_the_current_key(hddm_home, sim):
    k1, k2, k3, thief = (sim.party(n) for n in ("k1", "k2", "k3", "thief"))
    sim.trust(k1)
    _accept(sim, sim.rotation(k1, k2, created=NOW - timedelta(hours=2)))
    with pytest.raises(TrustError, match="already rotated"):
        _accept(sim, sim.rotation(k1, thief, created=NOW - timedelta(hours=1)))  # a stolen k1 cannot redirect
    _accept(sim, sim.rotation(k2, k3, created=NOW - timedelta(hours=1)))  # k2 is current now: it may rotate
    assert [TrustStore().is_trusted(k.did) for k in (k1, k2, k3, thief)] == [True, True, True, False]
    with pytest.raises(TrustError, match="after the key was rotated"):
        fetch_manifest(sim.origin, sim.expert(k2), progress=False)


def test_malformed_or_future_statements_are_refused(hddm_home, sim):
    old = sim.party("alice")
    sim.trust(old)
    with pytest.raises(ManifestError, match="rotate to itself"):
        _accept(sim, sim.rotation(old, old))
    with pytest.raises(TrustError, match="in the future"):
        _accept(sim, sim.rotation(old, sim.party("b"), created=NOW + timedelta(days=1)))
    good = rotation_bytes(sign_rotation(old.key, sim.party("c").did))
    with pytest.raises(ManifestError, match="unknown field"):
        accept_rotation(good.replace(b'"new"', b'"extra":1,"new"'))
    assert parse_json(good)["old"] == old.did
