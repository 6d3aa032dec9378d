"""Golden file: a fixed key and description must give byte-identical signed manifest bytes and CID.

Ed25519 is deterministic and RFC 8785 fixes the bytes, so any change in canonicalisation, field names,
defaults or float formatting shows up here. Regenerate deliberately: ``HDDM_REGOLD=1 pytest this_file``.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hddm_p2p.p2p.cid import cid_of_bytes
from hddm_p2p.p2p.manifests import manifest_bytes, sign_manifest, validate
from hddm_p2p.p2p.signing import did_from_key, ipns_name
from tests.p2p.test_manifests import expert_doc

GOLDEN = Path(__file__).parent / "golden" / "expert-manifest.json"
# RFC 8032 §7.1 test 1 secret key; its public key is d75a9801...511a.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")


def test_rfc8032_key_identity():
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SEED)
    assert key.public_key().public_bytes_raw().hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert key.sign(b"").hex().startswith("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155")
    did = did_from_key(key)
    assert did.startswith("did:key:z6Mk") and ipns_name(did).startswith("k51qzi5uqu5d")


def test_signed_manifest_bytes_match_golden_file():
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SEED)
    doc = expert_doc(publisher=did_from_key(key), time_scale=1000.0, expires="2030-06-01T12:00:00+00:00")
    data = manifest_bytes(sign_manifest(validate(doc), key))
    if os.environ.get("HDDM_REGOLD"):
        GOLDEN.write_bytes(data)
    assert data == GOLDEN.read_bytes(), "signed manifest bytes changed; if intended, regenerate with HDDM_REGOLD=1"
    assert cid_of_bytes(data) == cid_of_bytes(GOLDEN.read_bytes())
    assert b'"expires":"2030-06-01T12:00:00Z"' in data and b'"time_scale":1000,' in data
