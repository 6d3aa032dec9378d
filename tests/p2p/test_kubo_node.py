"""KuboNode safety: every socket, listen and announced address on loopback; the config set explicitly."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

from hddm_p2p.p2p.kubo_client import api_url

pytestmark = pytest.mark.kubo


def _ip_of_multiaddr(addr: str) -> str:
    parts = addr.strip("/").split("/")
    assert parts[0] in ("ip4", "ip6"), addr
    return parts[1]


def _process_sockets(pid: int) -> list[tuple[str, str, int]]:
    """(protocol, local ip, state) of every inet socket the process holds, from /proc (Linux)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append((proto, _proc_ip(fields[1].split(":")[0]), int(fields[3], 16)))
    return found


def _proc_ip(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))  # /proc prints IPv6 as 4 host-order words
    return socket.inet_ntop(socket.AF_INET6, words)


def test_every_address_is_loopback(kubo_node):
    node = kubo_node
    ident = node.client.id()
    announced = ident["Addresses"]
    listening = node.client.swarm_addrs_listen()
    assert announced and listening
    for addr in announced + listening + [node.api]:
        assert ipaddress.ip_address(_ip_of_multiaddr(addr)) in ipaddress.ip_network("127.0.0.0/8"), addr
    assert api_url(node.api).startswith("http://127.0.0.1:")
    gateway = (node.repo / "gateway").read_text().strip()
    assert gateway.startswith("http://127.0.0.1:")
    sockets = _process_sockets(node._proc.pid)
    assert sockets, "the daemon holds no inet sockets?"
    for proto, ip, _ in sockets:
        assert ipaddress.ip_address(ip).is_loopback, (proto, ip)


def test_config_is_explicitly_loopback_only(kubo_node):
    cfg = kubo_node.config_show()
    assert cfg["Bootstrap"] == [] and cfg["Peering"]["Peers"] == []
    assert cfg["Discovery"]["MDNS"]["Enabled"] is False
    assert cfg["Routing"]["Type"] == "none" and cfg["Routing"]["DelegatedRouters"] == []
    assert cfg["AutoNAT"]["ServiceMode"] == "disabled"
    assert cfg["AutoConf"]["Enabled"] is False and cfg["AutoTLS"]["Enabled"] is False
    assert cfg["Swarm"]["RelayClient"]["Enabled"] is False and cfg["Swarm"]["RelayService"]["Enabled"] is False
    assert cfg["Swarm"]["EnableHolePunching"] is False and cfg["Swarm"]["DisableNatPortMap"] is True
    network = cfg["Swarm"]["Transports"]["Network"]
    assert network["TCP"] is True and not any(v for k, v in network.items() if k != "TCP")
    for key in ("API", "Gateway"):
        assert cfg["Addresses"][key].startswith("/ip4/127.0.0.1/tcp/")
    assert all(a.startswith("/ip4/127.0.0.1/") for a in cfg["Addresses"]["Swarm"])
    assert cfg["Addresses"]["Announce"] == [] and cfg["Addresses"]["AppendAnnounce"] == []
    assert "/ip4/128.0.0.0/ipcidr/1" in cfg["Addresses"]["NoAnnounce"]
    assert "/ip4/0.0.0.0/ipcidr/2" in cfg["Swarm"]["AddrFilters"]
    assert not any("127.0.0.0" in f for f in cfg["Swarm"]["AddrFilters"])
    assert cfg["Pubsub"]["Enabled"] is True and cfg["Ipns"]["UsePubsub"] is True
    assert cfg["HTTPRetrieval"]["Enabled"] is False
    assert cfg["Plugins"]["Plugins"]["telemetry"]["Config"]["Mode"] == "off"
    assert cfg["Import"]["CidVersion"] == 1 and cfg["Import"]["UnixFSFileMaxLinks"] == 1024


def test_filters_cover_everything_but_127_slash_8():
    from hddm_p2p.p2p.kubo_node import non_loopback_filters

    nets = [ipaddress.ip_network(f.split("/")[2] + "/" + f.split("/")[4]) for f in non_loopback_filters()]
    v4 = [n for n in nets if n.version == 4]
    assert sum(n.num_addresses for n in v4) == 2**32 - 2**24
    for probe in ["10.0.0.1", "192.168.1.1", "8.8.8.8", "126.255.255.255", "128.0.0.0"]:
        assert any(ipaddress.ip_address(probe) in n for n in v4), probe
    assert not any(ipaddress.ip_address("127.1.2.3") in n for n in v4)


def test_two_nodes_connect_only_to_each_other(kubo_pair):
    a, b = kubo_pair
    assert [p["Peer"] for p in a.client.swarm_peers()] == [b.peer_id]
    assert [p["Peer"] for p in b.client.swarm_peers()] == [a.peer_id]
    for p in a.client.swarm_peers():
        assert _ip_of_multiaddr(p["Addr"]).startswith("127.")


def test_stop_removes_the_repo(tmp_path):
    from hddm_p2p.p2p.kubo_node import KuboNode

    node = KuboNode(name="x").start()
    repo, pid = node.repo, node._proc.pid
    node.stop()
    assert not repo.exists()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
