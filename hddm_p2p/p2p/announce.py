"""Announcements over IPFS pubsub (topic ``hddm/announce/1``): hints that a manifest exists, never trusted as such.

An announcement carries only a manifest CID and unverified hints (name, publisher). A listener fetches and
verifies every announced manifest and its artifacts exactly as ``hddm fetch`` does before reporting it usable;
anything that fails is reported with the reason, and nothing about it is kept.

    announce(store, cid)                                  # publisher side
    for heard in listen(store, count=1, timeout=30): ...  # heard.usable, heard.manifest, heard.error
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Literal

from pydantic import Field

from hddm_p2p.errors import HddmError, ManifestError, StoreError
from hddm_p2p.p2p.cid import parse_cid
from hddm_p2p.p2p.fetch import fetch_manifest
from hddm_p2p.p2p.manifests import Published, validate, verify_signature
from hddm_p2p.p2p.manifests.common import Cid, Strict
from hddm_p2p.p2p.signing import canonical_json, parse_json
from hddm_p2p.p2p.store.base import Store
from hddm_p2p.p2p.trust import TrustStore

TOPIC = "hddm/announce/1"
MAX_MESSAGE = 4096  # an announcement is a CID and two short hints


class Announcement(Strict):
    schema_: Literal["hddm.announce/1"] = Field(default="hddm.announce/1", alias="schema")
    cid: Cid
    name: str | None = Field(default=None, max_length=128, description="hint only")
    publisher: str | None = Field(default=None, max_length=128, description="hint only")


@dataclass(frozen=True)
class Heard:
    """One announcement received: ``usable`` only if its manifest and artifacts verified."""

    cid: str | None
    hint: Announcement | None
    manifest: Published | None = None
    error: str | None = None

    @property
    def usable(self) -> bool:
        return self.manifest is not None


def _needs_pubsub(store: Store) -> None:
    if not hasattr(store, "pubsub_pub"):
        raise StoreError("announcements travel over IPFS pubsub; use --store ipfs (a Kubo daemon with pubsub enabled)")


def announce(store: Store, cid: str) -> Announcement:
    """Publish a hint for manifest ``cid`` (which must be in ``store`` and correctly signed)."""
    _needs_pubsub(store)
    m = verify_signature(parse_json(store.cat(parse_cid(cid))))
    msg = Announcement.model_validate({"cid": parse_cid(cid), "name": m.name, "publisher": m.publisher})
    store.pubsub_pub(TOPIC, canonical_json(msg.to_doc()))
    return msg


def _parse(data: bytes) -> Announcement:
    if len(data) > MAX_MESSAGE:
        raise ManifestError(f"announcement of {len(data)} bytes is larger than {MAX_MESSAGE}")
    doc = parse_json(data)
    if doc.get("schema") != "hddm.announce/1":
        raise ManifestError(f"not an hddm announcement (schema {doc.get('schema')!r})")
    return validate(doc, Announcement)


def _messages(store: Store, timeout: float | None) -> Iterator[bytes]:
    """Message payloads on ``TOPIC`` until ``timeout`` seconds pass (forever if None).

    The subscription is an HTTP stream that blocks; a daemon thread drains it into a queue so the
    deadline is kept here, and leaving the ``with`` closes the stream."""
    q: queue.Queue = queue.Queue()

    def drain(messages) -> None:
        try:
            for msg in messages:
                q.put(msg["data"])
        except Exception as e:  # the stream closing when we stop listening, or the daemon going away
            q.put(e)

    deadline = None if timeout is None else time.monotonic() + timeout
    with store.pubsub_sub(TOPIC) as messages:
        threading.Thread(target=drain, args=(messages,), daemon=True).start()
        while deadline is None or time.monotonic() < deadline:
            try:
                item = q.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if isinstance(item, Exception):
                raise StoreError(f"the pubsub subscription ended: {item}")
            yield item


def listen(store: Store, *, count: int | None = None, timeout: float | None = None, trust: TrustStore | None = None,
           allow_untrusted: bool = False, progress: bool = False) -> Iterator[Heard]:
    """Yield each announcement heard (at most ``count``, for at most ``timeout`` s), verified by a full fetch."""
    _needs_pubsub(store)
    trust, n = trust or TrustStore(), 0
    for data in _messages(store, timeout):
        hint = None
        try:
            hint = _parse(data)
            m, _ = fetch_manifest(store, hint.cid, trust, allow_untrusted=allow_untrusted, progress=progress)
            yield Heard(hint.cid, hint, manifest=m)
        except HddmError as e:
            yield Heard(hint.cid if hint else None, hint, error=str(e))
        n += 1
        if count is not None and n >= count:
            return
