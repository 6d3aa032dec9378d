"""Availability on real engines: three loopback Kubo nodes, each with a real IPFS Cluster peer (CRDT).

- ``hddm publish --cluster`` on node A with replication min=max=2; node A stops; another node fetches and
  verifies the expert.
- a cluster peer that is down at publish time is reported, and publishing still succeeds on the others.
- ``hddm publish --pin-service`` through Kubo's remote pinning, against the cluster's Pinning Service API.
"""

from __future__ import annotations

import ipaddress
import json
import re

import httpx
import pytest
from typer.testing import CliRunner

import hddm_p2p.cli.app  # noqa: F401  (registers the commands)
from hddm_p2p.cli.root import app
from hddm_p2p.p2p.cluster_client import ClusterClient
from hddm_p2p.p2p.cluster_node import cluster_bin_dir, start_cluster
from hddm_p2p.p2p.fetch import fetch_manifest
from hddm_p2p.p2p.kubo_node import KuboNode
from hddm_p2p.p2p.manifests import ExpertManifest
from hddm_p2p.p2p.store.kubo import KuboStore
from tests.conftest import _kubo_binary
from tests.p2p.test_kubo_node import _ip_of_multiaddr, _process_sockets

pytestmark = pytest.mark.kubo
runner = CliRunner()
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


@pytest.fixture
def mesh():
    """Three connected loopback Kubo nodes a, b, c and one cluster peer on each."""
    if not (cluster_bin_dir() / ".no-natportmap").is_file():
        pytest.fail(f"no loopback-safe ipfs-cluster-service in {cluster_bin_dir()}: run `make cluster`", pytrace=False)
    kubos = [KuboNode(_kubo_binary(), name=n) for n in "abc"]
    peers = []
    try:
        for k in kubos:
            k.start()
        for i, k in enumerate(kubos):
            for other in kubos[i + 1:]:
                k.connect(other)
        peers = start_cluster(kubos)
        yield kubos, peers
    finally:
        for p in peers:
            p.close()
        for k in kubos:
            k.stop()


def hddm(*args: str, code: int = 0) -> dict:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return json.loads(result.output) if code == 0 else result.output


def _publish(expert_dir, kubo: KuboNode, *extra: str) -> dict:
    return hddm("publish", str(expert_dir), "--store", "ipfs", "--ipfs-api", kubo.api, "--no-progress", "--json", *extra)


def test_cluster_is_loopback_only(mesh):
    _, peers = mesh
    for peer in peers:
        cfg = peer.config()
        assert cfg["cluster"]["mdns_interval"] == "0s" and cfg["cluster"]["enable_relay_hop"] is False
        assert "ipfsproxy" not in cfg["api"]
        ident = httpx.get(f"http://127.0.0.1:{peer.rest_port}/id", trust_env=False).json()
        addrs = ident["addresses"] + ident["cluster_peers_addresses"] + ident["ipfs"]["addresses"]
        addrs += cfg["cluster"]["listen_multiaddress"] + cfg["cluster"]["peer_addresses"]
        addrs += [a["http_listen_multiaddress"] for a in cfg["api"].values()]
        assert len(ident["cluster_peers"]) == 3
        for addr in addrs:
            assert ipaddress.ip_address(_ip_of_multiaddr(addr)) in LOOPBACK, addr
        for proto, ip, _ in _process_sockets(peer._proc.pid):
            assert ipaddress.ip_address(ip).is_loopback, (peer.name, proto, ip)


def test_cluster_replicates_so_others_fetch_after_publisher_stops(home, mesh, expert_dir, alice):
    (a, b, c), peers = mesh
    out = _publish(expert_dir, a, "--cluster", peers[0].rest_api, "--replication", "2", "2")
    report = out["cluster"]
    assert report["down"] == [] and report["replication_min"] == 2
    cids = [art["cid"] for art in out["artifacts"]] + [out["cid"]]
    assert set(report["pinned_on"]) == set(cids)
    for cid in cids:
        assert len(report["pinned_on"][cid]) == 2  # max=2: exactly two peers hold it pinned
    peers[0].stop()
    a.stop()
    m, paths = fetch_manifest(KuboStore(c.api), out["cid"], progress=False)
    assert isinstance(m, ExpertManifest) and m.publisher == alice.did
    assert paths["model.safetensors"].read_bytes() == (expert_dir / "model.safetensors").read_bytes()
    by_name = {p.name: p.kubo for p in peers}
    for cid, names in report["pinned_on"].items():  # the replicas are real: their Kubo nodes hold the blocks
        for name in set(names) - {"cluster-a"}:
            assert KuboStore(by_name[name].api).has(cid), (cid, name)


def test_peer_down_at_publish_time_is_reported_and_publish_succeeds(home, mesh, expert_dir):
    (a, b, c), peers = mesh
    peers[2].stop()
    out = _publish(expert_dir, a, "--cluster", peers[0].rest_api, "--replication", "2", "2")
    assert out["cluster"]["down"] == [peers[2].peer_id]  # a peer that is down has no name to report
    assert all(set(on) == {"cluster-a", "cluster-b"} for on in out["cluster"]["pinned_on"].values())
    assert KuboStore(b.api).has(out["cid"])
    peers[1].stop()  # now only one of three is up: min=2 cannot be met, refused before anything is published
    err = hddm("publish", str(expert_dir), "--store", "ipfs", "--ipfs-api", a.api, "--cluster", peers[0].rest_api,
               "--no-progress", code=1)
    # (c may have left the CRDT peerset by now: its ping metrics expired)
    assert re.match(r"error: only 1 of [23] cluster peers", err) and peers[1].peer_id in err


def test_pin_service_pins_through_kubo_remote_pinning(home, mesh, expert_dir, alice):
    (a, b, c), peers = mesh
    a.ipfs("pin", "remote", "service", "add", "hddm-cluster", peers[1].pinsvc_url, "any-token")
    out = _publish(expert_dir, a, "--pin-service", "hddm-cluster")
    cids = [art["cid"] for art in out["artifacts"]] + [out["cid"]]
    assert out["pin_service"] == {"name": "hddm-cluster", "pinned": cids}
    with ClusterClient(peers[1].rest_api) as cluster:
        for cid in cids:  # the cluster received the pins through the Pinning Service API
            assert "pinned" in cluster.status(cid).values()
    peers[0].stop()
    a.stop()
    m, paths = fetch_manifest(KuboStore(c.api), out["cid"], progress=False)
    assert m.publisher == alice.did
    assert paths["model.safetensors"].read_bytes() == (expert_dir / "model.safetensors").read_bytes()


def test_bad_availability_flags_are_one_line_errors(home, expert_dir, kubo_node):
    err = hddm("publish", str(expert_dir), "--cluster", "/ip4/127.0.0.1/tcp/9094", code=1)
    assert "add --store ipfs" in err
    err = hddm("publish", str(expert_dir), "--store", "ipfs", "--ipfs-api", kubo_node.api, "--pin-service", "nope",
               code=1)
    assert err.startswith("error: ") and "ipfs pin remote service add" in err
    err = hddm("publish", str(expert_dir), "--store", "ipfs", "--ipfs-api", kubo_node.api,
               "--cluster", "/ip4/10.1.2.3/tcp/9094", code=1)
    assert "not a loopback address" in err
    assert not (home / "published.json").exists()  # nothing was published
