"""A repository simulator for attack tests, after python-tuf's ``tests/repository_simulator.py``.

It plays every party with real Ed25519 keys and real bytes. Publishers and curators sign expert manifests and
catalogs with any version, dates, artifacts and revocations — including documents an honest ``hddm publish``
never writes. ``CompromisedNode`` is a real HTTP server on 127.0.0.1 speaking the slice of Kubo's RPC API that
``KuboStore`` uses (``cat``, ``files/stat``, ``name/resolve``), serving whatever bytes and IPNS answers the
attacker chooses. The user side is always the real library (TrustStore, Cache, fetch_manifest, resolve_catalog).

    sim = RepositorySimulator(tmp_path)
    alice = sim.party("alice"); sim.trust(alice)          # the user trusts alice
    v1 = sim.expert(alice, version=1); v2 = sim.expert(alice, version=2)
    with CompromisedNode(sim.origin) as node:            # replays v1 under alice's catalog name, swaps bytes...
        node.substitute(cid, other_bytes)
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from safetensors.torch import save_file

from hddm_p2p.p2p.cid import cid_of_bytes
from hddm_p2p.p2p.manifests import CATALOG_SCHEMA, EXPERT_SCHEMA
from hddm_p2p.p2p.rotation import ROTATION_SCHEMA
from hddm_p2p.p2p.signing import canonical_json, did_from_key, ipns_name, sign_document
from hddm_p2p.p2p.store import LocalStore
from hddm_p2p.p2p.store.kubo import KuboStore
from hddm_p2p.p2p.threshold import cosign
from hddm_p2p.p2p.trust import TrustStore
from hddm_p2p.p2p.weights import SAFETENSORS_MEDIA_TYPE
from tests.p2p.conftest import expert_description

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


@dataclass(frozen=True)
class Party:
    """A key holder: publisher, curator or attacker."""

    name: str
    key: Ed25519PrivateKey

    @property
    def did(self) -> str:
        return did_from_key(self.key)

    @property
    def ipns(self) -> str:
        return ipns_name(self.did)


def tiny_safetensors(path: Path, seed: int) -> Path:
    g = torch.Generator().manual_seed(seed)
    save_file({"w": torch.randn(8, 4, generator=g)}, str(path), metadata={"hddm.format": "hddm-expert/1"})
    return path


class RepositorySimulator:
    """Parties, their signed documents, and the honest origin store (a LocalStore) that holds them."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.origin = LocalStore(self.workdir / "origin")
        self.parties: dict[str, Party] = {}

    def party(self, name: str) -> Party:
        if name not in self.parties:
            self.parties[name] = Party(name, Ed25519PrivateKey.generate())
        return self.parties[name]

    @staticmethod
    def trust(*parties: Party) -> None:
        """The user adds these keys to their trust store (``hddm trust add``)."""
        for p in parties:
            TrustStore().add(p.did, p.name)

    def put(self, doc: dict[str, Any], signer: Party | None) -> str:
        """Store ``doc`` (signed by ``signer`` unless None) as canonical bytes; returns its CID."""
        return self.origin.put_bytes(canonical_json(sign_document(doc, signer.key) if signer else doc))

    def artifact(self, data: bytes, name: str = "model.safetensors", media_type: str = SAFETENSORS_MEDIA_TYPE) -> dict:
        self.origin.put_bytes(data)
        return {"name": name, "cid": cid_of_bytes(data), "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data), "media_type": media_type}

    def weights(self, seed: int) -> bytes:
        return tiny_safetensors(self.workdir / f"w{seed}.safetensors", seed).read_bytes()

    def expert_doc(self, who: Party, *, name: str = "sim-expert", version: int = 1, seed: int = 0,
                   created: datetime = NOW, expires: datetime | None = None,
                   artifacts: list[dict] | None = None) -> dict[str, Any]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        desc = {k: v for k, v in expert_description(name).items() if k != "kind"}
        return {"schema": EXPERT_SCHEMA, **desc, "version": version, "created": iso(created),
                "expires": iso(expires) if expires else None, "publisher": who.did, "license": "apache-2.0",
                "artifacts": artifacts or [self.artifact(self.weights(seed))]}

    def expert(self, who: Party, signer: Party | None = None, **kw: Any) -> str:
        """A signed expert manifest by ``who`` (signed by ``signer``, default ``who``); returns its CID."""
        return self.put(self.expert_doc(who, **kw), signer or who)

    def catalog_doc(self, who: Party, *, name: str = "main", version: int = 1, entries: Iterable[str] = (),
                    revoked_manifests: Iterable[str] = (), revoked_keys: Iterable[str] = (),
                    created: datetime = NOW, expires: datetime | None = None) -> dict[str, Any]:
        return {"schema": CATALOG_SCHEMA, "name": name, "version": version, "publisher": who.did,
                "created": iso(created), "expires": iso(expires) if expires else None,
                "entries": [{"cid": c, "name": None, "kind": None} for c in sorted(entries)],
                "revoked_manifests": sorted(revoked_manifests), "revoked_keys": sorted(revoked_keys)}

    def catalog(self, who: Party, **kw: Any) -> str:
        return self.put(self.catalog_doc(who, **kw), who)

    def curated_catalog(self, who: Party, cosigners: Iterable[Party], *, extra_sigs: Iterable[dict] = (),
                        **kw: Any) -> str:
        """A catalog signed by ``who`` and cosigned by each of ``cosigners`` (plus raw ``extra_sigs``)."""
        doc = sign_document(self.catalog_doc(who, **kw), who.key)
        for c in cosigners:
            doc = cosign(doc, c.key)
        doc["signatures"] = [*doc.get("signatures", []), *extra_sigs]
        return self.origin.put_bytes(canonical_json(doc))

    def rotation(self, old: Party, new: Party, signer: Party | None = None, created: datetime = NOW) -> str:
        """A rotation statement old → new signed by ``signer`` (default: the old key); returns its CID."""
        doc = {"schema": ROTATION_SCHEMA, "old": old.did, "new": new.did, "created": iso(created)}
        return self.put(doc, signer or old)

    def point_name(self, who: Party, cid: str) -> None:
        """IPNS on the embedded store: ``who``'s name → ``cid`` (what ``hddm catalog publish`` does)."""
        names = self.origin.root / "names.json"
        data = json.loads(names.read_text()) if names.exists() else {}
        names.write_text(json.dumps({**data, who.ipns: cid}))


def expired(days: float = 1) -> datetime:
    return NOW - timedelta(days=days)


class CompromisedNode:
    """A fake Kubo RPC API on 127.0.0.1 that answers from ``origin`` unless told to lie.

    ``substitute(cid, data)`` serves ``data`` for ``cid``; ``names[ipns] = cid`` answers IPNS resolution;
    ``requests`` counts calls per endpoint. ``store()`` is a real ``KuboStore`` pointed at it."""

    def __init__(self, origin: LocalStore):
        self.origin = origin
        self.swaps: dict[str, bytes] = {}
        self.names: dict[str, str] = {}
        self.requests: dict[str, int] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CompromisedNode:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def api(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self._server.server_address[1]}"

    def store(self) -> KuboStore:
        return KuboStore(self.api, timeout=10)

    def substitute(self, cid: str, data: bytes) -> None:
        self.swaps[cid] = data

    def content(self, cid: str) -> bytes | None:
        if cid in self.swaps:
            return self.swaps[cid]
        blob = self.origin.blobs / cid
        return blob.read_bytes() if blob.is_file() else None

    def _handler(self):
        node = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                url = urlsplit(self.path)
                command = url.path.removeprefix("/api/v0/")
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                node.requests[command] = node.requests.get(command, 0) + 1
                arg = q.get("arg", "").removeprefix("/ipfs/").removeprefix("/ipns/")
                if command == "name/resolve":
                    return self._json({"Path": f"/ipfs/{node.names[arg]}"} if arg in node.names else None)
                data = node.content(arg)
                if command == "files/stat":
                    return self._json({"Size": len(data)} if data is not None else None)
                if command == "cat" and data is not None:
                    start = int(q.get("offset", 0))
                    end = start + int(q["length"]) if "length" in q else None
                    return self._send(200, data[start:end], "application/octet-stream")
                return self._json(None)

            def _json(self, obj):
                if obj is None:
                    return self._send(500, json.dumps({"Message": "not found", "Code": 0}).encode(), "application/json")
                return self._send(200, json.dumps(obj).encode(), "application/json")

            def _send(self, status: int, body: bytes, ctype: str):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
