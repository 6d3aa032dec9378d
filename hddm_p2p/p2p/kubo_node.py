"""``KuboNode``: a real Kubo daemon in a temporary repo that can only talk to 127.0.0.0/8.

Used by tests, the demo and benchmarks. The repo is created with ``ipfs init --profile test,unixfs-v1-2025``,
then its config is rewritten explicitly (never trusting defaults) by ``loopback_config``:

- no peers to start from or discover: ``Bootstrap`` and ``Peering`` empty, MDNS off, ``Routing.Type`` none,
  ``AutoConf`` off (no remote config fetch), no delegated routers or publishers, no HTTP retrieval;
- no NAT or relay machinery: AutoNAT service disabled, relay client/service, hole punching, NAT port
  mapping, AutoTLS off; only the TCP transport;
- API, gateway and swarm listen on ``127.0.0.1`` port 0 (the kernel picks free ports; the daemon reports
  them), nothing non-loopback is announced (``NoAnnounce``) or dialled (``Swarm.AddrFilters``);
- telemetry off (``IPFS_TELEMETRY=off`` and the plugin config);
- pubsub on, and IPNS over pubsub (``Ipns.UsePubsub``) so names resolve between connected nodes.

>>> with KuboNode() as a, KuboNode() as b:
...     a.connect(b)
...     cid = a.client.add([b"hi"], params=UNIXFS_V1_2025.kubo_add_params())
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from hddm_p2p.errors import StoreError, StoreUnavailable
from hddm_p2p.p2p.kubo_client import KuboClient
from hddm_p2p.paths import kubo_bin

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
_READY_TIMEOUT_S = 60.0


def non_loopback_filters() -> list[str]:
    """Multiaddr CIDR filters covering every IPv4 address outside 127.0.0.0/8, and all of IPv6."""
    rest = ipaddress.ip_network("0.0.0.0/0").address_exclude(ipaddress.ip_network("127.0.0.0/8"))
    return sorted(f"/ip4/{n.network_address}/ipcidr/{n.prefixlen}" for n in rest) + ["/ip6/::/ipcidr/0"]


def loopback_config(config: dict) -> dict:
    """Rewrite a fresh Kubo config so the node reaches nothing outside 127.0.0.0/8 (see module docstring)."""
    filters = non_loopback_filters()
    config["Bootstrap"] = []
    config["Peering"] = {"Peers": []}
    config["Discovery"] = {"MDNS": {"Enabled": False}}
    config["Routing"] = {**config.get("Routing", {}), "Type": "none", "DelegatedRouters": [],
                         "AcceleratedDHTClient": False}
    config["AutoConf"] = {"Enabled": False}
    config["AutoTLS"] = {"Enabled": False}
    config["AutoNAT"] = {"ServiceMode": "disabled"}
    config["HTTPRetrieval"] = {"Enabled": False}
    config["Provide"] = {**config.get("Provide", {}), "Enabled": False}
    config["Addresses"] = {"API": LOOPBACK, "Gateway": LOOPBACK, "Swarm": [LOOPBACK], "Announce": [],
                           "AppendAnnounce": [], "NoAnnounce": filters}
    swarm = config.setdefault("Swarm", {})
    swarm.update({"AddrFilters": filters, "DisableNatPortMap": True, "EnableHolePunching": False,
                  "RelayClient": {"Enabled": False}, "RelayService": {"Enabled": False}})
    swarm["Transports"] = {"Network": {"TCP": True, "QUIC": False, "Websocket": False, "WebTransport": False,
                                       "WebRTCDirect": False, "Relay": False},
                           "Security": {}, "Multiplexers": {}}
    config["Pubsub"] = {**config.get("Pubsub", {}), "Enabled": True, "Router": "gossipsub"}
    config["Ipns"] = {**config.get("Ipns", {}), "UsePubsub": True, "DelegatedPublishers": []}
    config["Gateway"] = {**config.get("Gateway", {}), "NoFetch": True}
    config["Plugins"] = {"Plugins": {"telemetry": {"Config": {"Mode": "off"}}}}
    return config


def require_kubo() -> Path:
    """The Kubo binary, or a ``StoreUnavailable`` saying how to build it."""
    binary = kubo_bin()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise StoreUnavailable(f"Kubo binary not found at {binary}; run `make kubo` (or set HDDM_KUBO_BIN)")
    return binary


class KuboNode:
    """A loopback-only Kubo daemon in a temporary repo; a context manager (``start``/``stop``)."""

    def __init__(self, binary: Path | None = None, *, name: str = "node"):
        self.binary = Path(binary) if binary else require_kubo()
        self.name = name
        self.repo: Path | None = None
        self._tmp: str | None = None
        self._proc: subprocess.Popen | None = None
        self._client: KuboClient | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> KuboNode:
        self._tmp = tempfile.mkdtemp(prefix=f"hddm-kubo-{self.name}-")
        self.repo = Path(self._tmp) / "repo"
        self.ipfs("init", "--profile", "test,unixfs-v1-2025", "--empty-repo")
        cfg_path = self.repo / "config"
        cfg_path.write_text(json.dumps(loopback_config(json.loads(cfg_path.read_text())), indent=2))
        return self._launch()

    def _launch(self) -> KuboNode:
        log = open(Path(self._tmp) / "daemon.log", "ab")
        self._proc = subprocess.Popen([str(self.binary), "daemon", "--migrate=false", "--enable-gc=false"],
                                      env=self._env(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL the daemon as a crash would, keeping its repo (fault-injection tests); ``restart`` follows."""
        if self._client:
            self._client.close()
            self._client = None
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def restart(self) -> KuboNode:
        """Start the daemon again on the same repo after ``kill`` (new API port; content and keys kept)."""
        self.kill()
        (self.repo / "api").unlink(missing_ok=True)  # stale address of the dead daemon
        return self._launch()

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL after 3 s: open pubsub streams can stall a graceful
        shutdown, and the repo is thrown away anyway) and delete its repo."""
        if self._client:
            self._client.close()
            self._client = None
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> KuboNode:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- use -----------------------------------------------------------------------------------

    @property
    def api(self) -> str:
        """The RPC API multiaddr, e.g. ``/ip4/127.0.0.1/tcp/40123``."""
        return (self.repo / "api").read_text().strip()

    @property
    def client(self) -> KuboClient:
        if self._client is None:
            self._client = KuboClient(self.api)
        return self._client

    @property
    def peer_id(self) -> str:
        return self.client.id()["ID"]

    def swarm_addrs(self) -> list[str]:
        """Full ``/ip4/.../tcp/N/p2p/<id>`` addresses other nodes can dial."""
        return list(self.client.id()["Addresses"] or [])

    def connect(self, other: KuboNode) -> None:
        """``swarm connect`` to ``other`` and wait until each lists the other as a peer."""
        self.client.swarm_connect(other.swarm_addrs()[0])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(p["Peer"] == other.peer_id for p in self.client.swarm_peers()):
                return
            time.sleep(0.1)
        raise StoreError(f"kubo {self.name}: swarm connect to {other.name} did not complete")

    def config_show(self) -> dict:
        return json.loads(self.ipfs("config", "show"))

    def ipfs(self, *args: str, input: bytes | None = None) -> str:
        """Run the ``ipfs`` CLI against this node's repo (through the daemon's API once it runs)."""
        done = subprocess.run([str(self.binary), *args], env=self._env(), input=input, capture_output=True,
                              timeout=120)
        if done.returncode != 0:
            raise StoreError(f"ipfs {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode()

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IPFS_", "LIBP2P_"))}
        return {**env, "IPFS_PATH": str(self.repo), "IPFS_TELEMETRY": "off"}

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise StoreUnavailable(f"kubo {self.name} exited during start: {self._log_tail()}")
            if (self.repo / "api").exists():
                try:
                    self.client.id()
                    return
                except StoreUnavailable:
                    pass
            time.sleep(0.1)
        raise StoreUnavailable(f"kubo {self.name} did not become ready in {_READY_TIMEOUT_S:.0f} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return (Path(self._tmp) / "daemon.log").read_text(errors="replace")[-800:].replace("\n", " | ")
        except OSError:
            return "(no log)"
