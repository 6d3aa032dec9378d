"""KuboStore between two real daemons: publish on A, fetch and verify on B; IPNS; pubsub; failures."""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hddm_p2p.errors import IntegrityError, StoreError, StoreUnavailable
from hddm_p2p.p2p.cache import Cache
from hddm_p2p.p2p.cid import cid_of_bytes, hash_file
from hddm_p2p.p2p.kubo_client import api_url
from hddm_p2p.p2p.store import KuboStore, open_store
from hddm_p2p.p2p.store.base import part_path
from tests.p2p.test_cid import MiB, pattern

pytestmark = pytest.mark.kubo


@pytest.fixture
def stores(kubo_pair):
    a, b = kubo_pair
    return KuboStore(a.api), KuboStore(b.api)


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(pattern(3 * MiB + 999))
    return path


def test_put_on_a_get_on_b(stores, weights, tmp_path):
    a, b = stores
    digest = a.add_file(weights)
    assert digest == hash_file(weights)
    assert a.has(digest.cid) and not b.has(digest.cid)
    assert digest.cid in a.client.pin_ls()
    out = b.get_file(digest.cid, tmp_path / "b" / "w.bin", size=digest.size, progress=False)
    assert out.read_bytes() == weights.read_bytes()
    assert b.has(digest.cid)
    b.pin(digest.cid)
    assert b.client.pin_ls(digest.cid) == {digest.cid: "recursive"}


def test_cache_fetch_through_kubo(stores, weights, tmp_path):
    a, b = stores
    digest = a.add_file(weights)
    cache = Cache(tmp_path / "cache")
    path = cache.fetch(b, digest.cid, sha256=digest.sha256, size=digest.size, name="model.safetensors",
                       progress=False)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest.sha256


def test_download_resumes_with_cat_offset(stores, weights, tmp_path):
    a, b = stores
    cid = a.put_file(weights)
    dest = tmp_path / "w.bin"
    part_path(dest).write_bytes(weights.read_bytes()[: MiB + 5])
    b.download(cid, dest, progress=False)  # size looked up with files/stat
    assert dest.read_bytes() == weights.read_bytes() and not part_path(dest).exists()


def test_corrupted_partial_is_refused_and_nothing_visible(stores, weights, tmp_path):
    a, b = stores
    cid = a.put_file(weights)
    dest = tmp_path / "w.bin"
    part_path(dest).write_bytes(b"\xff" * MiB)  # a bad prefix: the resumed file cannot hash to the CID
    with pytest.raises(IntegrityError, match="discarded"):
        b.get_file(cid, dest, progress=False)
    assert not dest.exists() and not part_path(dest).exists()


def test_kubo_cid_is_checked_against_the_local_one(kubo_node, weights):
    class MisconfiguredStore(KuboStore):
        def _add_params(self):
            return {**super()._add_params(), "chunker": "size-262144"}

    with pytest.raises(IntegrityError, match="local unixfs-v1-2025 CID"):
        MisconfiguredStore(kubo_node.api).add_file(weights)


def test_cat_small_objects(stores):
    a, b = stores
    cid = a.put_bytes(b'{"kind": "expert"}')
    assert cid == cid_of_bytes(b'{"kind": "expert"}')
    assert b.cat(cid) == b'{"kind": "expert"}'
    with pytest.raises(StoreError, match="more than"):
        b.cat(cid, max_size=3)
    with a.client.cat(cid, offset=2, length=4) as chunks:
        assert b"".join(chunks) == b'kind'


def test_ipns_publish_on_a_resolve_on_b(stores):
    a, b = stores
    first, second = a.put_bytes(b"catalog v1"), a.put_bytes(b"catalog v2")
    name = a.name_publish(first)
    assert b.name_resolve(name) == first
    assert a.name_publish(second) == name
    assert eventually(lambda: b.name_resolve(f"/ipns/{name}"), second) == second  # the update arrives by gossip


def eventually(resolve, expected: str, seconds: float = 10.0) -> str:
    """IPNS-over-pubsub updates reach a subscribed node asynchronously (≈0.5 s here): poll for them."""
    deadline = time.monotonic() + seconds
    while (value := resolve()) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def test_imported_ed25519_key_publishes_under_its_own_name(stores):
    a, b = stores
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    name = a.key_import("publisher", pem)
    assert a.client.key_list()["publisher"] == name
    cid = a.put_bytes(b"signed catalog")
    assert a.name_publish(cid, key="publisher") == name
    assert b.name_resolve(name) == cid


def test_pubsub_from_a_reaches_b(stores):
    a, b = stores
    got: list[dict] = []
    ready = threading.Event()

    def listen():
        with b.pubsub_sub("hddm/announce") as messages:
            ready.set()
            for message in messages:
                got.append(message)
                return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(10)
    for _ in range(50):  # gossipsub needs a moment to learn that B subscribed
        if a.client.pubsub_peers("hddm/announce"):
            break
        threading.Event().wait(0.1)
    a.pubsub_pub("hddm/announce", b'{"cid": "bafy..."}')
    thread.join(10)
    assert got and got[0]["data"] == b'{"cid": "bafy..."}'
    assert got[0]["from"] == a.client.id()["ID"]


def test_content_nobody_has_times_out_with_a_message(kubo_pair, tmp_path):
    a, b = kubo_pair
    store = KuboStore(b.api, timeout=1.5)
    missing = cid_of_bytes(b"held by no node")
    with pytest.raises(StoreError, match="no answer .* connected peer"):
        store.cat(missing)
    with pytest.raises(StoreError, match="no answer"):
        store.get_file(missing, tmp_path / "m", size=15, progress=False)
    assert not (tmp_path / "m").exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_kubo_is_one_line_store_unavailable(tmp_path):
    store = open_store("ipfs", f"/ip4/127.0.0.1/tcp/{_closed_port()}")
    with pytest.raises(StoreUnavailable) as err:
        store.cat(cid_of_bytes(b"x"))
    message = str(err.value)
    assert "\n" not in message and "ipfs daemon" in message and "--store local" in message


def test_remote_api_is_refused_unless_allowed(monkeypatch):
    monkeypatch.delenv("HDDM_ALLOW_REMOTE_API", raising=False)
    with pytest.raises(StoreError, match="not a loopback address"):
        KuboStore("/ip4/10.1.2.3/tcp/5001")
    with pytest.raises(StoreError, match="not a loopback"):
        api_url("http://example.com:5001")
    monkeypatch.setenv("HDDM_ALLOW_REMOTE_API", "1")
    assert api_url("/ip4/10.1.2.3/tcp/5001") == "http://10.1.2.3:5001"
    assert api_url("/ip6/::1/tcp/5001/http") == "http://[::1]:5001"
    for bad in ["", "/ip4/127.0.0.1", "/ip4/127.0.0.1/udp/5001", "nonsense"]:
        with pytest.raises(StoreError, match="cannot parse"):
            api_url(bad)
