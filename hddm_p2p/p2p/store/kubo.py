"""``KuboStore``: content on a Kubo (IPFS) daemon through its RPC API.

- ``add_file`` streams the file to ``/api/v0/add`` with explicit ``unixfs-v1-2025`` import parameters while
  computing the CID and sha256 locally from the same read (``ParallelHasher``, two threads); a different
  answer from Kubo is an ``IntegrityError``.
- ``download`` streams ``cat`` into ``dest.part``, resuming at its length with ``cat --offset``, and renames
  it to ``dest`` only after size and CID match.
- IPNS (``key_import``, ``name_publish``, ``name_resolve``) and pubsub (``pubsub_pub``, ``pubsub_sub``) are
  exposed for catalogs and announcements.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from hddm_p2p.errors import IntegrityError, StoreError
from hddm_p2p.p2p.cid import UNIXFS_V1_2025, FileDigest, ImportProfile, cid_of_bytes, parse_cid
from hddm_p2p.p2p.kubo_client import DEFAULT_API, KuboClient
from hddm_p2p.p2p.hashing import ParallelHasher, read_blocks
from hddm_p2p.p2p.store.base import MANIFEST_MAX, Receiver, Store, transfer_progress


class KuboStore(Store):
    """A ``Store`` backed by the Kubo daemon whose RPC API is at the multiaddr ``api`` (loopback only)."""

    kind = "ipfs"

    def __init__(self, api: str = DEFAULT_API, *, profile: ImportProfile = UNIXFS_V1_2025, timeout: float = 60.0):
        self.client = KuboClient(api, timeout=timeout)
        self.profile = profile

    def __repr__(self) -> str:
        return f"KuboStore({self.client.api!r})"

    def add_file(self, path: Path, *, progress: bool = False) -> FileDigest:
        path = Path(path)
        size = path.stat().st_size

        def blocks(advance, hasher: ParallelHasher) -> Iterator[memoryview]:
            with open(path, "rb", buffering=0) as f:
                for block in read_blocks(f, hasher):  # the one read: hashed on two threads, sent from here
                    advance(len(block))
                    yield block
            if hasher.size != size:
                raise StoreError(f"{path} changed size while it was being added ({size} → {hasher.size} bytes); "
                                 "add it again once nothing writes to it")

        with transfer_progress(f"add {path.name}", size, progress) as advance, ParallelHasher(self.profile) as hasher:
            kubo_cid = self.client.add(blocks(advance, hasher), filename=path.name, params=self._add_params(),
                                       size=size)
            digest = hasher.finalize()
        self._check_same(kubo_cid, digest.cid, str(path))
        return digest

    def put_bytes(self, data: bytes) -> str:
        local = cid_of_bytes(data, self.profile)
        self._check_same(self.client.add([data], params=self._add_params()), local, f"{len(data)} bytes")
        return local

    def download(self, cid: str, dest: Path, *, size: int | None = None, progress: bool = True) -> FileDigest:
        cid = parse_cid(cid)
        total = size if size is not None else self.client.file_size(cid)
        receiver = Receiver(dest, cid, total)
        try:
            with transfer_progress(f"fetch {cid[:16]}…", total, progress) as advance:
                advance(receiver.offset)
                if receiver.offset < total:
                    with self.client.cat(cid, offset=receiver.offset) as blocks:
                        for block in blocks:  # received and written here, hashed on the receiver's two threads
                            receiver.write(block)
                            advance(len(block))
        except BaseException:
            receiver.close()  # keep the .part: the next run resumes from it
            raise
        if receiver.offset < total:
            receiver.close()
            raise StoreError(f"{cid}: the download stopped at {receiver.offset} of {total} bytes; "
                             "run the same command again to resume")
        return receiver.commit()

    def cat(self, cid: str, *, max_size: int = MANIFEST_MAX) -> bytes:
        cid = parse_cid(cid)
        with self.client.cat(cid, length=max_size + 1) as chunks:
            data = b"".join(chunks)
        if len(data) > max_size:
            raise StoreError(f"{cid} is more than the {max_size} bytes allowed here")
        if cid_of_bytes(data, self.profile) != cid:
            raise IntegrityError(f"{cid}: the bytes Kubo returned hash to {cid_of_bytes(data, self.profile)}")
        return data

    def has(self, cid: str) -> bool:
        try:
            self.client.block_stat(parse_cid(cid), offline=True)
            return True
        except StoreError as e:
            if "not found" in str(e) or "offline" in str(e):
                return False
            raise

    def pin(self, cid: str) -> None:
        self.client.pin_add(parse_cid(cid))

    # --- IPNS and pubsub -------------------------------------------------------------------------

    def key_import(self, name: str, pem: bytes) -> str:
        """Import a PKCS#8 PEM private key (e.g. the publisher's Ed25519 key) as ``name``; returns its IPNS name."""
        return self.client.key_import(name, pem)

    def name_publish(self, cid: str, *, key: str = "self", lifetime: str = "8760h", ttl: str = "1m") -> str:
        """Point the IPNS name of ``key`` at ``cid``; returns the IPNS name (``k51...``)."""
        return self.client.name_publish(f"/ipfs/{parse_cid(cid)}", key=key, lifetime=lifetime, ttl=ttl)["Name"]

    def name_resolve(self, name: str) -> str:
        """The CID an IPNS name (``k51...`` or ``/ipns/k51...``) points at.

        Names travel over IPNS-over-pubsub (``Routing.Type`` none leaves no DHT): the first resolution on a
        node subscribes to the name's topic and fetches the newest record from connected peers; later
        updates arrive by gossip, typically within a second, so a resolution right after a remote publish
        may still return the previous value."""
        path = self.client.name_resolve(name if name.startswith("/ipns/") else f"/ipns/{name}", timeout="10s")
        if not path.startswith("/ipfs/"):
            raise StoreError(f"IPNS name {name} points at {path}, not at an /ipfs/ CID")
        return parse_cid(path.removeprefix("/ipfs/").split("/")[0])

    def pubsub_pub(self, topic: str, data: bytes) -> None:
        self.client.pubsub_pub(topic, data)

    @contextmanager
    def pubsub_sub(self, topic: str) -> Iterator[Iterator[dict[str, Any]]]:
        """``with store.pubsub_sub(topic) as messages:`` yields ``{"from", "data", "seqno"}`` dicts."""
        with self.client.pubsub_sub(topic) as messages:
            yield messages

    # --- helpers -----------------------------------------------------------------------------------

    def _add_params(self) -> dict[str, str]:
        return {**self.profile.kubo_add_params(), "pin": "true"}

    @staticmethod
    def _check_same(kubo_cid: str, local_cid: str, what: str) -> None:
        if parse_cid(kubo_cid) != local_cid:
            raise IntegrityError(f"Kubo named {what} {kubo_cid} but the local unixfs-v1-2025 CID is {local_cid}; "
                                 "the node's import settings differ (check its Kubo version)")
