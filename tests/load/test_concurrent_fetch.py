"""100 concurrent fetches of one expert — threads and processes, from the embedded store and from a real Kubo
daemon — all complete and verify, and the weights are downloaded exactly once."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from hddm_p2p.p2p.cache import Cache
from hddm_p2p.p2p.cid import hash_file
from hddm_p2p.p2p.fetch import fetch_manifest
from hddm_p2p.p2p.publish import publish_dir
from hddm_p2p.p2p.store import LocalStore
from hddm_p2p.p2p.store.kubo import KuboStore
from hddm_p2p.p2p.trust import TrustStore
from tests.faults.conftest import big_expert_dir, publisher, visible_files  # noqa: F401 - fixture
from tests.load.conftest import CountingProxy, CountingStore

N = 100


def _fetch_all(store, cid, n=N):
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda _: fetch_manifest(store, cid, progress=False), range(n)))


def _all_verified(results, m):
    weights = m.artifact("model.safetensors")
    paths = {r[1]["model.safetensors"] for r in results}
    assert len(results) == N and len(paths) == 1 and all(r[0] == m for r in results)
    assert hash_file(paths.pop()).sha256 == weights.sha256


def test_100_threads_from_the_embedded_store(hddm_home, publisher, tmp_path):
    res = publish_dir(big_expert_dir(tmp_path / "e", 16), LocalStore(), progress=False)
    store = CountingStore(LocalStore())
    _all_verified(_fetch_all(store, res.cid), res.manifest)
    assert set(store.downloads.values()) == {1} and len(store.downloads) == 2  # weights + model card, once each
    assert len(visible_files(Cache().root)) == 3  # weights, card, manifest.json
    assert TrustStore().highest(res.manifest.publisher, res.manifest.slot) == (1, res.cid)


_PROCESS = """
import sys
from concurrent.futures import ThreadPoolExecutor
from hddm_p2p.p2p.fetch import fetch_manifest
from hddm_p2p.p2p.store import LocalStore
from tests.load.conftest import CountingStore
store = CountingStore(LocalStore())
with ThreadPoolExecutor(50) as pool:
    got = list(pool.map(lambda _: fetch_manifest(store, sys.argv[1], progress=False), range(50)))
print(len(got), sum(store.downloads.values()))
"""


def test_100_fetches_from_2_processes_of_50_threads(hddm_home, publisher, tmp_path):
    res = publish_dir(big_expert_dir(tmp_path / "e", 16), LocalStore(), progress=False)
    procs = [subprocess.Popen([sys.executable, "-c", _PROCESS, res.cid], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0] * 2, outs
    counts = [tuple(map(int, out.split())) for out, _ in outs]
    assert sum(n for n, _ in counts) == N and sum(d for _, d in counts) == 2  # weights + card, once in all
    path = Cache().path_for(res.manifest.artifact("model.safetensors").cid, "model.safetensors")
    assert hash_file(path).sha256 == res.manifest.artifact("model.safetensors").sha256


@pytest.mark.kubo
def test_100_threads_from_a_real_kubo_daemon(hddm_home, publisher, kubo_node, tmp_path):
    res = publish_dir(big_expert_dir(tmp_path / "e", 16), KuboStore(kubo_node.api), progress=False)
    weights = res.manifest.artifact("model.safetensors")
    with CountingProxy(kubo_node.client.base_url) as proxy:
        _all_verified(_fetch_all(KuboStore(proxy.api), res.cid), res.manifest)
        assert proxy.calls[("cat", weights.cid)] == 1  # the daemon streamed the weights once
        assert proxy.calls[("cat", res.cid)] == N  # every fetch re-reads and re-verifies the small manifest
