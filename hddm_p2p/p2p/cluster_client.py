"""A thin client for IPFS Cluster's REST API (``ipfs-cluster-service``'s ``restapi``), over httpx.

Only what replication needs: the peer list (with the peers that cannot be reached), pinning a CID with
replication factors and preferred allocations, and a pin's status on every peer. Loopback only, like the
Kubo client: the REST API has no authentication by default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import httpx

from hddm_p2p.errors import StoreError, StoreUnavailable
from hddm_p2p.p2p.kubo_client import api_url

DEFAULT_CLUSTER_API = "/ip4/127.0.0.1/tcp/9094"


@dataclass(frozen=True)
class ClusterPeerInfo:
    """One cluster peer as ``GET /peers`` reports it; ``error`` is non-empty when it could not be reached
    (then its name is unknown, and ``name`` is its peer id)."""

    id: str
    name: str
    error: str = ""

    @property
    def up(self) -> bool:
        return not self.error


class ClusterClient:
    """Calls to one IPFS Cluster REST API. ``StoreUnavailable`` when it cannot be reached, else ``StoreError``."""

    def __init__(self, api: str = DEFAULT_CLUSTER_API, *, timeout: float = 60.0):
        self.api = api
        try:
            base = api_url(api)
        except StoreError as e:
            raise StoreError(str(e).replace("Kubo API", "IPFS Cluster API")) from None
        self._http = httpx.Client(base_url=base, timeout=httpx.Timeout(timeout, connect=5.0), trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ClusterClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        """The answer's JSON values (the REST API streams some answers as one JSON object per line)."""
        try:
            response = self._http.request(method, path, params=params)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise StoreUnavailable(f"cannot reach the IPFS Cluster REST API at {self.api} ({e.__class__.__name__}); "
                                   "start `ipfs-cluster-service daemon` or pass --cluster MULTIADDR") from None
        except httpx.TransportError as e:
            raise StoreError(f"IPFS Cluster {method} {path}: {e}") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise StoreError(f"IPFS Cluster {method} {path}: {message.strip()[:300]}")
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]

    def id(self) -> dict[str, Any]:
        return self._request("GET", "/id")[0]

    def peers(self) -> list[ClusterPeerInfo]:
        """Every peer in the peerset; a peer that is down carries the dial error."""
        return [ClusterPeerInfo(p["id"], p.get("peername") or p["id"], p.get("error") or "")
                for p in self._request("GET", "/peers")]

    def pin(self, cid: str, *, replication_min: int, replication_max: int, name: str = "",
            allocations: Sequence[str] = ()) -> dict[str, Any]:
        """``POST /pins/{cid}``; ``allocations`` are peer ids tried first. Returns the pin with its allocations."""
        params: dict[str, Any] = {"replication-min": replication_min, "replication-max": replication_max,
                                  "name": name}
        if allocations:
            params["user-allocations"] = ",".join(allocations)
        return self._request("POST", f"/pins/{cid}", params)[0]

    def status(self, cid: str) -> dict[str, str]:
        """``{peer id: status}`` of ``cid`` on every peer (``pinned``, ``pinning``, ``remote``, ``*_error`` …)."""
        info = self._request("GET", f"/pins/{cid}")[0]
        return {peer: p.get("status", "") for peer, p in (info.get("peer_map") or {}).items()}
