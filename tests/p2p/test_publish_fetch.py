"""publish_dir → fetch_manifest on the embedded LocalStore: the happy path and every refusal on the way."""

from __future__ import annotations

import json
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
    other = make_expert_dir(expert_dir.parent / "other", name="other-expert")
    assert publish_dir(other, store, progress=False).manifest.version == 1
