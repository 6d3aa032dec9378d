"""``ClusterPeer``: a real IPFS Cluster peer (``ipfs-cluster-service``) that can only talk to 127.0.0.0/8.

Used by tests and demos, next to a loopback ``KuboNode`` whose RPC API it drives. The config comes from
``ipfs-cluster-service init --consensus crdt`` and is then rewritten explicitly by ``loopback_cluster_config``:

- CRDT consensus, every peer trusted, a shared 32-byte secret (the private network key of the cluster swarm);
- cluster swarm on ``127.0.0.1:<free port>`` over TCP only, no relay hop, mDNS off (``mdns_interval`` 0);
- the only peers it knows are the other loopback peers passed as ``peer_addresses`` (no other bootstrap);
- REST API and Pinning Service API (``pinsvcapi``) on ``127.0.0.1:<free port>``; the IPFS proxy is dropped;
- the binary is built without libp2p's NAT port mapping (see ``scripts/install_ipfs_cluster.sh``);
- metrics and tracing off; short ping/metric intervals so a stopped peer is noticed in seconds, not minutes.

>>> peers = start_cluster([kubo_a, kubo_b, kubo_c])   # three ClusterPeers, connected to each other
>>> peers[0].rest_api                               # "/ip4/127.0.0.1/tcp/40123"
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from hddm_p2p.errors import StoreUnavailable

if TYPE_CHECKING:
    from hddm_p2p.p2p.kubo_node import KuboNode

CLUSTER_VERSION = "v1.1.0"
_READY_TIMEOUT_S = 60.0


def cluster_bin_dir() -> Path:
    """Where ``ipfs-cluster-service``/``-ctl`` live: ``$HDDM_CLUSTER_BIN_DIR``, else where ``make cluster`` builds."""
    env = os.environ.get("HDDM_CLUSTER_BIN_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "hddm-p2p" / f"cluster-{CLUSTER_VERSION}"


def require_cluster() -> Path:
    """The ``ipfs-cluster-service`` binary, or a ``StoreUnavailable`` saying how to build it.

    Only a build by ``scripts/install_ipfs_cluster.sh`` is accepted (marker ``.no-natportmap``): upstream
    v1.1.0 always probes the LAN for a UPnP/NAT-PMP router, which a loopback-only peer must not do."""
    binary = cluster_bin_dir() / "ipfs-cluster-service"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise StoreUnavailable(f"ipfs-cluster-service not found at {binary}; run `make cluster` "
                               "(or set HDDM_CLUSTER_BIN_DIR)")
    if not (binary.parent / ".no-natportmap").is_file():
        raise StoreUnavailable(f"{binary} was not built by scripts/install_ipfs_cluster.sh (it would probe the LAN "
                               "for a NAT router); run `make cluster`")
    return binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_cluster_config(config: dict, *, name: str, secret: str, kubo_api: str, swarm_port: int,
                            rest_port: int, pinsvc_port: int) -> dict:
    """Rewrite a fresh ``service.json`` so the peer reaches nothing outside 127.0.0.0/8 (see module docstring)."""
    cluster = config["cluster"]
    cluster.update({"peername": name, "secret": secret, "listen_multiaddress": [f"/ip4/127.0.0.1/tcp/{swarm_port}"],
                    "announce_multiaddress": [], "enable_relay_hop": False, "mdns_interval": "0s",
                    "peer_addresses": [], "monitor_ping_interval": "2s", "peer_watch_interval": "2s",
                    "dial_peer_timeout": "2s", "leave_on_shutdown": False})
    config["consensus"]["crdt"]["trusted_peers"] = ["*"]
    apis = config["api"]
    apis.pop("ipfsproxy", None)
    apis["restapi"]["http_listen_multiaddress"] = f"/ip4/127.0.0.1/tcp/{rest_port}"
    apis["pinsvcapi"]["http_listen_multiaddress"] = f"/ip4/127.0.0.1/tcp/{pinsvc_port}"
    config["ipfs_connector"]["ipfshttp"].update({"node_multiaddress": kubo_api, "connect_swarms_delay": "1s"})
    for informer in config["informer"].values():
        informer["metric_ttl"] = "6s"
    config["monitor"]["pubsubmon"]["check_interval"] = "2s"
    config["observations"]["metrics"]["enable_stats"] = False
    config["observations"]["tracing"]["enable_tracing"] = False
    config["observations"]["tracing"]["jaeger_agent_endpoint"] = "/ip4/127.0.0.1/udp/6831"
    return config


class ClusterPeer:
    """One loopback-only ``ipfs-cluster-service`` in a temp dir, driving ``kubo``'s RPC API.

    ``init`` writes the config and identity (so ``peer_id`` and ``swarm_addr`` are known before any peer
    runs); ``start(peers)`` runs the daemon with the other peers' swarm addresses as its only peers."""

    def __init__(self, kubo: KuboNode, *, secret: str, name: str = "peer", binary: Path | None = None):
        self.binary = Path(binary) if binary else require_cluster()
        self.kubo, self.secret, self.name = kubo, secret, name
        self._tmp = tempfile.mkdtemp(prefix=f"hddm-cluster-{name}-")
        self.dir = Path(self._tmp) / "cluster"
        self.swarm_port, self.rest_port, self.pinsvc_port = free_port(), free_port(), free_port()
        self._proc: subprocess.Popen | None = None
        self._init()

    def _init(self) -> None:
        done = subprocess.run([str(self.binary), "--config", str(self.dir), "init", "--consensus", "crdt"],
                              env=self._env(), capture_output=True, timeout=60)
        if done.returncode != 0:
            raise StoreUnavailable(f"ipfs-cluster-service init failed: {done.stderr.decode(errors='replace')[-400:]}")
        path = self.dir / "service.json"
        cfg = loopback_cluster_config(json.loads(path.read_text()), name=self.name, secret=self.secret,
                                      kubo_api=self.kubo.api, swarm_port=self.swarm_port, rest_port=self.rest_port,
                                      pinsvc_port=self.pinsvc_port)
        path.write_text(json.dumps(cfg, indent=2))

    @property
    def peer_id(self) -> str:
        return json.loads((self.dir / "identity.json").read_text())["id"]

    @property
    def swarm_addr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.swarm_port}/p2p/{self.peer_id}"

    @property
    def rest_api(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.rest_port}"

    @property
    def pinsvc_url(self) -> str:
        """The Pinning Service API endpoint, for ``ipfs pin remote service add``."""
        return f"http://127.0.0.1:{self.pinsvc_port}"

    def config(self) -> dict:
        return json.loads((self.dir / "service.json").read_text())

    def start(self, peers: list[ClusterPeer] = ()) -> ClusterPeer:
        path = self.dir / "service.json"
        cfg = json.loads(path.read_text())
        cfg["cluster"]["peer_addresses"] = [p.swarm_addr for p in peers if p is not self]
        path.write_text(json.dumps(cfg, indent=2))
        log = open(Path(self._tmp) / "daemon.log", "ab")
        self._proc = subprocess.Popen([str(self.binary), "--config", str(self.dir), "daemon"], env=self._env(),
                                      stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL after 10 s); the config dir stays until ``close``."""
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IPFS_", "LIBP2P_", "CLUSTER_"))}
        return {**env, "IPFS_TELEMETRY": "off"}

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise StoreUnavailable(f"cluster peer {self.name} exited during start: {self.log_tail()}")
            try:
                httpx.get(f"http://127.0.0.1:{self.rest_port}/id", timeout=2, trust_env=False).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise StoreUnavailable(f"cluster peer {self.name} not ready in {_READY_TIMEOUT_S:.0f} s: {self.log_tail()}")

    def wait_peerset(self, n: int, timeout: float = 30.0) -> None:
        """Wait until this peer's peerset (CRDT: peers heard from over pubsub) has ``n`` peers and it holds
        valid allocation metrics of all of them (else its allocator would only choose among those it has)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ident = self._get("/id")
            metrics = [self._get(f"/monitor/metrics/{m}") for m in ("freespace", "tag:group")]
            if len(ident.get("cluster_peers") or []) >= n and all(len(m) >= n for m in metrics):
                return
            time.sleep(0.2)
        raise StoreUnavailable(f"cluster peer {self.name} sees fewer than {n} peers after {timeout:.0f} s")

    def _get(self, path: str):
        response = httpx.get(f"http://127.0.0.1:{self.rest_port}{path}", timeout=5, trust_env=False)
        response.raise_for_status()
        return response.json()

    def log_tail(self, n: int = 800) -> str:
        try:
            return (Path(self._tmp) / "daemon.log").read_text(errors="replace")[-n:].replace("\n", " | ")
        except OSError:
            return "(no log)"


def start_cluster(kubos: list[KuboNode], *, binary: Path | None = None) -> list[ClusterPeer]:
    """One ``ClusterPeer`` per Kubo node, sharing a fresh secret, each started knowing all the others."""
    secret = secrets.token_hex(32)
    peers = [ClusterPeer(k, secret=secret, name=f"cluster-{k.name}", binary=binary) for k in kubos]
    try:
        for p in peers:
            p.start(peers)
        for p in peers:
            p.wait_peerset(len(peers))
    except BaseException:
        for p in peers:
            p.close()
        raise
    return peers
