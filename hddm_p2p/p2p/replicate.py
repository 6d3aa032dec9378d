"""Keep published content available when the publisher goes offline, on existing engines only.

- ``replicate_cluster``: pin the CIDs on an IPFS Cluster (REST API ``POST /pins/{cid}`` with replication
  factors min/max). Peers that are down right now are reported and left out of the allocation (the live
  peers are passed as ``user-allocations``), so publishing succeeds whenever enough peers are up; it then
  waits until every CID is ``pinned`` on at least ``min`` peers.
- ``pin_remote``: pin through Kubo's remote pinning (the IPFS Pinning Service API; ``ipfs pin remote add``)
  on a service the node already knows (``ipfs pin remote service add NAME ENDPOINT KEY``).

>>> report = replicate_cluster(["bafy..."], "/ip4/127.0.0.1/tcp/9094", replication=(2, 2))
>>> report.down, report.pinned_on["bafy..."]     # (["cluster-c"], ["cluster-a", "cluster-b"])
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

from hddm_p2p.errors import ReplicationError, StoreError
from hddm_p2p.p2p.cluster_client import ClusterClient, ClusterPeerInfo
from hddm_p2p.p2p.kubo_client import KuboClient


@dataclass(frozen=True)
class ClusterReport:
    """Where each CID ended up: peer names holding it ``pinned``, and the peers that were down."""

    api: str
    replication: tuple[int, int]
    peers: list[str]
    down: list[str]
    pinned_on: dict[str, list[str]]

    def to_json(self) -> dict[str, Any]:
        return {"api": self.api, "replication_min": self.replication[0], "replication_max": self.replication[1],
                "peers": self.peers, "down": self.down, "pinned_on": self.pinned_on}


def check_replication(replication: tuple[int, int]) -> tuple[int, int]:
    lo, hi = replication
    if not (1 <= lo <= hi or (lo == hi == -1)):
        raise ReplicationError(f"replication factor min={lo} max={hi} is invalid; use 1 <= min <= max "
                               "(or -1 -1 for every peer)")
    return lo, hi


def cluster_peers(cluster: ClusterClient, lo: int) -> tuple[list[ClusterPeerInfo], list[ClusterPeerInfo]]:
    """(all peers, live peers); ``ReplicationError`` when fewer than ``lo`` are up. Call it before publishing."""
    peers = cluster.peers()
    live = [p for p in peers if p.up]
    if lo > len(live):
        down = ", ".join(p.name for p in peers if not p.up)
        raise ReplicationError(f"only {len(live)} of {len(peers)} cluster peers at {cluster.api} are up (down: {down}); "
                               f"replication min={lo} cannot be met; start those peers or lower --replication")
    return peers, live


def replicate_cluster(cids: Sequence[str], api: str, *, replication: tuple[int, int] = (2, 2), name: str = "",
                      timeout: float = 120.0) -> ClusterReport:
    """Pin ``cids`` on the cluster at ``api`` and wait until each is pinned on ``min`` peers (see module doc)."""
    lo, hi = check_replication(replication)
    with ClusterClient(api) as cluster:
        peers, live = cluster_peers(cluster, lo)
        down = [p.name for p in peers if not p.up]
        names = {p.id: p.name for p in peers}
        prefer = [p.id for p in live] if down else []  # else the allocator balances by free space
        for cid in cids:
            cluster.pin(cid, replication_min=lo, replication_max=hi, name=name, allocations=prefer)
        pinned = {cid: _wait_pinned(cluster, cid, lo if lo > 0 else len(live), timeout, names) for cid in cids}
    return ClusterReport(api, (lo, hi), [p.name for p in peers], down, pinned)


def _wait_pinned(cluster: ClusterClient, cid: str, need: int, timeout: float, names: dict[str, str]) -> list[str]:
    """Peer names holding ``cid`` pinned, once at least ``need`` do; ``ReplicationError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        status = cluster.status(cid)
        pinned = sorted(names.get(p, p) for p, s in status.items() if s == "pinned")
        if len(pinned) >= need:
            return pinned
        if time.monotonic() > deadline:
            states = ", ".join(f"{names.get(p, p)}={s}" for p, s in sorted(status.items()))
            raise ReplicationError(f"{cid} is pinned on {len(pinned)} cluster peers after {timeout:.0f} s, "
                                   f"fewer than {need} ({states}); check those peers' IPFS daemons and retry")
        time.sleep(0.25)


def check_pin_service(client: KuboClient, service: str) -> None:
    """``ReplicationError`` unless the Kubo node knows the remote pinning service ``service``."""
    known = client.pin_remote_services()
    if service not in known:
        raise ReplicationError(f"the Kubo node at {client.api} knows no remote pinning service {service!r} "
                               f"(known: {', '.join(known) or 'none'}); add it with "
                               "`ipfs pin remote service add NAME ENDPOINT KEY`")


def pin_remote(client: KuboClient, cids: Sequence[str], service: str, *, name: str = "") -> list[dict[str, Any]]:
    """Pin ``cids`` on the remote pinning service ``service`` through Kubo; each answer ``{"Cid", "Status"}``."""
    check_pin_service(client, service)
    answers = []
    for i, cid in enumerate(cids):
        try:
            answers.append(client.pin_remote_add(cid, service=service, name=f"{name}#{i}" if name else cid))
        except StoreError as e:
            raise ReplicationError(f"remote pinning service {service!r} refused {cid}: {e}") from None
        if answers[-1].get("Status") != "pinned":
            raise ReplicationError(f"remote pinning service {service!r} left {cid} {answers[-1].get('Status')!r}")
    return answers
