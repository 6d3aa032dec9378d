"""Two real loopback-only Kubo daemons: publish on node A, fetch and verify on node B; catalogs under IPNS;
announcements over pubsub; a clear error when Kubo is unreachable."""

from __future__ import annotations

import json
import threading
import time

import pytest

from hddm_p2p.errors import StoreUnavailable
from hddm_p2p.p2p.announce import announce, listen
from hddm_p2p.p2p.catalog import publish_catalog, resolve_catalog
from hddm_p2p.p2p.fetch import fetch_manifest
from hddm_p2p.p2p.manifests import ExpertManifest
from hddm_p2p.p2p.publish import publish_dir
from hddm_p2p.p2p.signing import canonical_json, parse_json
from hddm_p2p.p2p.store.kubo import KuboStore

pytestmark = pytest.mark.kubo


@pytest.fixture
def stores(kubo_pair):
    a, b = kubo_pair
    return KuboStore(a.api), KuboStore(b.api)


def test_publish_on_a_fetch_and_verify_on_b(home, stores, expert_dir, alice):
    a, b = stores
    res = publish_dir(expert_dir, a, progress=False)
    assert not b.has(res.cid)
    m, paths = fetch_manifest(b, res.cid, progress=False)
    assert isinstance(m, ExpertManifest) and m.publisher == alice.did
    assert paths["model.safetensors"].read_bytes() == (expert_dir / "model.safetensors").read_bytes()
    assert "flow-linear" in paths["README.md"].read_text()


def test_tampered_manifest_on_a_is_refused_on_b(home, stores, expert_dir):
    a, b = stores
    res = publish_dir(expert_dir, a, progress=False)
    doc = parse_json(a.cat(res.cid))
    doc["artifacts"][0]["sha256"] = "0" * 64
    forged = a.put_bytes(canonical_json(doc))
    from hddm_p2p.errors import SignatureError

    with pytest.raises(SignatureError):
        fetch_manifest(b, forged, progress=False)
    assert not (home / "cache" / "blobs").exists() or not any((home / "cache" / "blobs").rglob("model.safetensors"))


def test_catalog_under_ipns_on_a_resolves_on_b(home, stores, expert_dir, alice):
    a, b = stores
    cid = publish_dir(expert_dir, a, progress=False).cid
    res = publish_catalog(a, "main", add=[cid])
    assert res.ipns == alice.ipns
    got, cat = resolve_catalog(b, alice.ipns)
    assert got == res.cid and [e.cid for e in cat.entries] == [cid]


def test_announce_on_a_listen_on_b(home, stores, expert_dir):
    a, b = stores
    cid = publish_dir(expert_dir, a, progress=False).cid
    heard = []
    t = threading.Thread(target=lambda: heard.extend(listen(b, count=2, timeout=20)))
    t.start()
    time.sleep(1.5)  # let the subscription reach A before publishing
    for _ in range(10):
        a.pubsub_pub("hddm/announce/1", b'{"schema": "hddm.announce/1", "cid": "not-a-cid"}')
        announce(a, cid)
        time.sleep(0.5)
        if not t.is_alive():
            break
    t.join(30)
    assert any(h.usable and h.cid == cid for h in heard)
    assert any(not h.usable and h.error for h in heard)


def test_kubo_unreachable_is_a_clear_error(home, expert_dir):
    store = KuboStore("/ip4/127.0.0.1/tcp/1")
    with pytest.raises(StoreUnavailable, match="--store local"):
        publish_dir(expert_dir, store, progress=False)


def test_cli_publish_on_a_fetch_and_show_catalog_on_b(home, kubo_pair, expert_dir, alice):
    from tests.p2p.test_cli_p2p import _error_line, hddm

    a, b = kubo_pair
    out = json.loads(hddm("publish", str(expert_dir), "--store", "ipfs", "--ipfs-api", a.api, "--catalog", "main",
                          "--json", "--no-progress").stdout)
    fetched = json.loads(hddm("fetch", out["cid"], "--store", "ipfs", "--ipfs-api", b.api, "--json",
                              "--no-progress").stdout)
    assert fetched["name"] == "cifar-fm-c0" and set(fetched["paths"]) >= {"model.safetensors", "README.md"}
    shown = json.loads(hddm("catalog", "show", alice.ipns, "--store", "ipfs", "--ipfs-api", b.api, "--json").stdout)
    assert [e["cid"] for e in shown["catalog"]["entries"]] == [out["cid"]]
    assert "announced" in hddm("announce", out["cid"], "--ipfs-api", a.api).stdout
    t0 = time.monotonic()
    assert hddm("listen", "--ipfs-api", b.api, "--timeout", "1", "--json").stdout == ""  # nothing announced since
    assert time.monotonic() - t0 < 10
    line = _error_line(hddm("fetch", out["cid"], "--store", "ipfs", "--ipfs-api", "/ip4/127.0.0.1/tcp/1", code=1))
    assert "cannot reach the Kubo RPC API" in line and "--store local" in line
