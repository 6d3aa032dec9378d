"""Faults without a daemon: a corrupted blob, a full disk during a cache write, Ctrl-C during publish,
two processes fetching one CID. After each, nothing unverified is visible and running again completes."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hddm_p2p.errors import IntegrityError
from hddm_p2p.p2p.cache import Cache
from hddm_p2p.p2p.cid import hash_file
from hddm_p2p.p2p.fetch import fetch_manifest
from hddm_p2p.p2p.manifests import ExpertManifest, load_bytes
from hddm_p2p.p2p.publish import publish_dir
from hddm_p2p.p2p.store import LocalStore
from hddm_p2p.p2p.trust import TrustStore
from tests.faults.conftest import MIB, big_expert_dir, finish, hddm, visible_files


def test_corrupted_local_blob_is_refused_then_repaired(hddm_home, publisher, tmp_path):
    src = big_expert_dir(tmp_path / "e", 2)
    res = publish_dir(src, LocalStore(), progress=False)
    blob = LocalStore().blob_path(res.manifest.artifact("model.safetensors").cid)
    data = bytearray(blob.read_bytes())
    data[MIB + 7] ^= 0x01  # one flipped bit in the second chunk
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="corrupted"):
        fetch_manifest(LocalStore(), res.cid, progress=False)
    assert visible_files(Cache().root) == [] and not list((Cache().root / "partial").glob("*"))
    assert TrustStore().highest(publisher.did, res.manifest.slot) is None
    blob.unlink()
    LocalStore().add_file(src / "model.safetensors")  # repaired by adding the file again
    _, paths = fetch_manifest(LocalStore(), res.cid, progress=False)
    assert paths["model.safetensors"].read_bytes() == (src / "model.safetensors").read_bytes()


# --- full disk ----------------------------------------------------------------------------------

def _mount_tmpfs(path: Path, mib: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _limit_file_size(limit: int):
    def preexec():  # in the child: writes past `limit` bytes fail with EFBIG instead of killing it (SIGXFSZ)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return preexec


@pytest.mark.parametrize("mechanism", ["tmpfs", "rlimit"])
def test_full_disk_during_cache_write(mechanism, hddm_home, tmp_path, monkeypatch):
    """`hddm fetch` with too little room for the weights: one-line error, nothing visible; with room, it completes."""
    home = tmp_path / "small-disk"
    if mechanism == "tmpfs" and not _mount_tmpfs(home, 10):
        pytest.skip("cannot mount a tmpfs here (not root); the rlimit variant covers the same path")
    try:
        monkeypatch.setenv("HDDM_HOME", str(home))
        from hddm_p2p.p2p.keys import KeyStore

        TrustStore().add(KeyStore().generate("alice").did, "alice")
        res = publish_dir(big_expert_dir(tmp_path / "e", 6), LocalStore(), progress=False)  # 6 of the 10 MiB
        limit = {} if mechanism == "tmpfs" else {"preexec_fn": _limit_file_size(2 * MIB)}
        code, _, err = finish(hddm("fetch", res.cid, "--no-progress", **limit))
        assert code == 1 and "Traceback" not in err, err
        assert ("No space left" if mechanism == "tmpfs" else "File too large") in err
        assert len(err.strip().splitlines()) == 1 and visible_files(Cache().root) == []
        assert TrustStore().highest(res.manifest.publisher, res.manifest.slot) is None
        if mechanism == "tmpfs":
            subprocess.run(["mount", "-o", "remount,size=32m", str(home)], check=True)  # space freed
        _, paths = fetch_manifest(LocalStore(), res.cid, progress=False)  # the same fetch, run again
        assert hash_file(paths["model.safetensors"]).sha256 == res.manifest.artifact("model.safetensors").sha256
    finally:
        if mechanism == "tmpfs":
            subprocess.run(["umount", "-l", str(home)], capture_output=True)


# --- Ctrl-C during publish ------------------------------------------------------------------------

def _manifests_in(store: LocalStore) -> list[str]:
    found = []
    for blob in store.blobs.glob("*") if store.blobs.exists() else []:
        if blob.stat().st_size < MIB:
            try:
                if isinstance(load_bytes(blob.read_bytes()), ExpertManifest):
                    found.append(blob.name)
            except Exception:  # noqa: BLE001 - non-manifest blobs (model cards, weights)
                pass
    return found


def test_ctrl_c_during_publish_leaves_nothing_half_written(hddm_home, publisher, tmp_path):
    src = big_expert_dir(tmp_path / "e", 96)
    store = LocalStore()
    proc = hddm("publish", str(src), "--no-progress")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (store.tmp.exists() and any(store.tmp.iterdir())):
        time.sleep(0.002)  # wait until the weights are being copied into the store
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 130 and "interrupted" in err and "Traceback" not in err, err
    assert not any(store.tmp.iterdir())  # the temp copy is gone
    assert _manifests_in(store) == [] and not (hddm_home / "published.json").exists()
    again = publish_dir(src, store, progress=False)  # the same publish, run again
    assert _manifests_in(store) == [again.cid] and again.manifest.version == 1  # the interrupted run used no version
    fetch_manifest(store, again.cid, progress=False)


# --- two processes, one CID -------------------------------------------------------------------------

_FETCH = """
import sys
from hddm_p2p.p2p.cache import Cache
from hddm_p2p.p2p.store import LocalStore
class Counting:  # delegates to the real store; counts real downloads
    def __init__(self, s): self.s, self.n = s, 0
    def download(self, *a, **k): self.n += 1; return self.s.download(*a, **k)
store = Counting(LocalStore())
Cache().fetch(store, sys.argv[1], sha256=sys.argv[2], size=int(sys.argv[3]), name="model.safetensors", progress=False)
print(store.n)
"""


def test_two_processes_fetch_one_cid_at_once(hddm_home, publisher, tmp_path):
    res = publish_dir(big_expert_dir(tmp_path / "e", 64), LocalStore(), progress=False)
    a = res.manifest.artifact("model.safetensors")
    procs = [subprocess.Popen([sys.executable, "-c", _FETCH, a.cid, a.sha256, str(a.size)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert sorted(int(out) for out, _ in results) == [0, 1]  # the flock made the second one wait, then reuse
    assert visible_files(Cache().root) == [Cache().path_for(a.cid, "model.safetensors")]
    assert not list((Cache().root / "partial").glob("*"))
    assert hash_file(Cache().path_for(a.cid, "model.safetensors")).sha256 == a.sha256
