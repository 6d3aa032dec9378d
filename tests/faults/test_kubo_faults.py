"""Faults with a real Kubo daemon: killed mid-fetch and restarted on the same repo; a corrupted block on disk."""

from __future__ import annotations

import threading
import time

import pytest

from hddm_p2p.errors import IntegrityError, StoreError
from hddm_p2p.p2p.cache import Cache
from hddm_p2p.p2p.cid import hash_file
from hddm_p2p.p2p.fetch import fetch_manifest
from hddm_p2p.p2p.publish import publish_dir
from hddm_p2p.p2p.store.kubo import KuboStore
from hddm_p2p.p2p.trust import TrustStore
from tests.faults.conftest import MIB, big_expert_dir, visible_files

pytestmark = pytest.mark.kubo


def _wait_for(cond, timeout: float = 60.0, step: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False


def test_daemon_killed_mid_fetch_then_restarted_completes(hddm_home, publisher, kubo_node, tmp_path):
    res = publish_dir(big_expert_dir(tmp_path / "e", 64), KuboStore(kubo_node.api), progress=False)
    weights = res.manifest.artifact("model.safetensors")
    cache = Cache()
    part = cache.root / "partial" / f"{weights.cid}.part"
    outcome: dict = {}

    def fetch():
        try:
            outcome["ok"] = fetch_manifest(KuboStore(kubo_node.api, timeout=20), res.cid, cache=cache, progress=False)
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            outcome["error"] = e

    worker = threading.Thread(target=fetch)
    worker.start()
    assert _wait_for(lambda: part.exists() and part.stat().st_size >= 4 * MIB), "download never started"
    kubo_node.kill()  # SIGKILL, mid-stream
    worker.join(60)
    assert isinstance(outcome.get("error"), StoreError), outcome  # one clear error, not a crash
    assert visible_files(cache.root) == [] and TrustStore().highest(res.manifest.publisher, res.manifest.slot) is None
    kept = part.stat().st_size
    assert 4 * MIB <= kept < weights.size  # the verified prefix stays for resumption, invisible to loaders

    kubo_node.restart()
    m, paths = fetch_manifest(KuboStore(kubo_node.api), res.cid, cache=cache, progress=False)
    assert hash_file(paths["model.safetensors"]).cid == weights.cid and not part.exists()
    assert TrustStore().highest(m.publisher, m.slot) == (1, res.cid)


def test_corrupted_block_in_the_daemon_repo_is_an_integrity_error(hddm_home, publisher, kubo_node, tmp_path):
    res = publish_dir(big_expert_dir(tmp_path / "e", 3), KuboStore(kubo_node.api), progress=False)
    leaves = [p for p in (kubo_node.repo / "blocks").rglob("*.data") if p.stat().st_size == MIB]
    assert leaves, "no 1 MiB raw leaf found in the flatfs blockstore"
    original = leaves[0].read_bytes()
    leaves[0].write_bytes(original[:100] + bytes([original[100] ^ 0xFF]) + original[101:])  # bit rot
    with pytest.raises(IntegrityError, match="hashes to"):
        fetch_manifest(KuboStore(kubo_node.api), res.cid, progress=False)
    assert visible_files(Cache().root) == [] and not list((Cache().root / "partial").glob("*"))
    leaves[0].write_bytes(original)  # the block repaired (re-added from a healthy copy)
    m, paths = fetch_manifest(KuboStore(kubo_node.api), res.cid, progress=False)
    assert hash_file(paths["model.safetensors"]).sha256 == m.artifact("model.safetensors").sha256
